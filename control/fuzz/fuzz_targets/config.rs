//! The appliance's TOML config (`control::config::Config::parse`, what `Config::load` runs on a
//! file's text): any text is a config or an error naming the file, and a config that parses has
//! the values its validation promises, and gives its EAL arguments and switch settings.
//!
//! Profiles named by path resolve in `nic-profiles/` (the config's folder for the parse); absolute
//! paths and `..` are left out, so the target reads no other file. Faults sections are allowed
//! (`SWITCHYARD_ALLOW_FAULTS=1`), so their validation is fuzzed too.

#![no_main]

use std::path::PathBuf;

use control::config::Config;
use libfuzzer_sys::fuzz_target;

fn profiles() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../nic-profiles")
}

fuzz_target!(|data: &[u8]| {
    // Set once, before the first parse reads it (libFuzzer runs the inputs on one thread).
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| std::env::set_var("SWITCHYARD_ALLOW_FAULTS", "1"));
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Only profiles the target may read: built-in names, or files of nic-profiles/.
    if let Ok(c) = toml::from_str::<Config>(text) {
        if c.ports.iter().any(|p| p.profile.starts_with('/') || p.profile.contains("..")) {
            return;
        }
    }
    match Config::parse(text, "fuzz.toml", Some(profiles())) {
        Ok(r) => {
            assert!(!r.ports.is_empty());
            for p in &r.ports {
                assert!((1..=32).contains(&p.prefix_len), "{p:?}");
                assert!(!p.address.is_unspecified() && !p.address.is_broadcast(), "{p:?}");
                assert!(!p.devargs.contains(char::is_whitespace), "{p:?}");
                assert!(r.config.engine.cores <= p.profile.queues.rx.min(p.profile.queues.tx));
            }
            let args = control::appliance::eal_args(&r);
            assert_eq!(args[0], "switchyard");
            let _ = r.switch_config();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
        }
    }
});
