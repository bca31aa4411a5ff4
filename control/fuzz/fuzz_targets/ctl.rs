//! The control socket's request line (`control::ctl::Request::parse`, as the server reads one:
//! a line, trimmed) and the response line the client reads back (`Response`). A request that
//! parses writes back as a line that parses the same.

#![no_main]

use control::ctl::protocol::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server reads one line (`BufRead::read_line`: invalid UTF-8 is an error, not a request).
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(n) => &data[..=n],
        None => data,
    };
    let Ok(line) = std::str::from_utf8(line) else { return };
    match Request::parse(line.trim()) {
        Ok(req) => {
            let again = serde_json::to_string(&req).expect("a request serializes");
            assert!(!again.contains('\n'), "a request is one line: {again}");
            assert_eq!(Request::parse(&again).expect("a request written back parses"), req);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The client's side: the appliance's answer.
    if let Ok(r) = serde_json::from_str::<Response>(line.trim()) {
        let _ = r.into_result();
    }
});
