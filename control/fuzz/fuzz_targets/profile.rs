//! NIC profiles (`control::profile::NicProfile::parse`): any text is a profile or an error, and a
//! profile that parses gives its port request and steering key.

#![no_main]

use control::profile::NicProfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match NicProfile::parse(text, "fuzz.toml") {
        Ok(p) => {
            assert!(p.queues.rx >= 1 && p.queues.tx >= 1, "{p:?}");
            assert!(p.mempool.mbufs >= 1024, "{p:?}");
            if let Some(rss) = &p.rss {
                if let Some(key) = rss.key_bytes() {
                    assert!(key.len() == 40 || key.len() == 52, "{rss:?}");
                }
                let _ = rss.request();
                let _ = rss.steering_key();
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("fuzz.toml"), "an error names its file: {message}");
        }
    }
});
