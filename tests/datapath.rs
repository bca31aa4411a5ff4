//! The data path end to end: the appliance on DPDK net_tap in a namespace, driven by real Linux
//! clients in that namespace. Each test has its own namespace and tap, so they run in parallel.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{connect, echo, Fixture};
use sha2::{Digest, Sha256};

#[test]
fn echo_round_trip_of_1_mib_matches_sha256() {
    let f = Fixture::new("echo", "sytecho");
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let want = Sha256::digest(&data);
    let got = f.ns.run(move || echo(data));
    assert_eq!(got.len(), 1 << 20);
    assert_eq!(Sha256::digest(&got), want, "echoed bytes differ");
}

/// Reads one HTTP response; returns (status line, headers, body).
fn read_response(r: &mut BufReader<TcpStream>) -> (String, Vec<String>, Vec<u8>) {
    let mut status = String::new();
    r.read_line(&mut status).expect("status line");
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("header line");
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("numeric Content-Length");
        }
        headers.push(line);
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).expect("body of Content-Length bytes");
    (status.trim_end().to_owned(), headers, body)
}

#[test]
fn http_serves_200_keep_alive_requests_on_one_connection() {
    let f = Fixture::new("http", "sythttp");
    f.ns.run(|| {
        let s = connect(80);
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for i in 0..200 {
            write!(w, "GET /{i} HTTP/1.1\r\nHost: 198.18.0.2\r\n\r\n").unwrap();
            let (status, headers, body) = read_response(&mut r);
            assert_eq!(status, "HTTP/1.1 200 OK", "request {i}");
            assert_eq!(body, b"hello from the test\n", "request {i}");
            assert!(!headers.iter().any(|h| h.eq_ignore_ascii_case("connection: close")));
        }
        // Pipelined: 10 requests in one write, 10 responses in order.
        let burst: String = (0..10).map(|_| "GET / HTTP/1.1\r\nHost: x\r\n\r\n").collect();
        w.write_all(burst.as_bytes()).unwrap();
        for _ in 0..10 {
            assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK");
        }
        // Connection: close is honoured: the response, then EOF.
        w.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        let (status, headers, _) = read_response(&mut r);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.iter().any(|h| h.eq_ignore_ascii_case("connection: close")));
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("EOF after Connection: close");
        assert!(rest.is_empty());
    });
}

#[test]
fn http_answers_a_malformed_request_line_with_400_and_closes() {
    let f = Fixture::new("http400", "syt400");
    f.ns.run(|| {
        let s = connect(80);
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
        let (status, ..) = read_response(&mut r);
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("EOF after 400");
        assert!(rest.is_empty());
    });
}

#[test]
fn twenty_concurrent_clients_are_served() {
    let f = Fixture::new("conc", "sytconc");
    let clients: Vec<_> = (0..20u32)
        .map(|c| {
            f.ns.spawn(move || {
                // echo 64 KiB, then one HTTP request, each on its own connection, all at once
                let data: Vec<u8> = (0..65536u32).map(|i| (i ^ c) as u8).collect();
                assert_eq!(echo(data.clone()), data, "client {c}: echo differs");
                let s = connect(80);
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK", "client {c}");
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        c.join().unwrap_or_else(|_| panic!("client {i} failed"));
    }
}

#[test]
fn connect_to_a_closed_port_is_refused_at_once() {
    let f = Fixture::new("refuse", "sytrefuse");
    let (kind, elapsed) = f.ns.run(|| {
        let start = Instant::now();
        let e =
            TcpStream::connect_timeout(&Fixture::addr(9), Duration::from_secs(10)).expect_err("port 9 has no listener");
        (e.kind(), start.elapsed())
    });
    assert_eq!(kind, ErrorKind::ConnectionRefused);
    eprintln!("refused in {elapsed:?}");
    // The first SYN is answered with an RST: well inside Linux's first SYN retransmission (1 s).
    assert!(elapsed < Duration::from_secs(1), "refusal took {elapsed:?}: the SYN was not answered at once");
}

#[test]
fn icmp_echo_is_answered() {
    let f = Fixture::new("ping", "sytping");
    let out =
        f.ns.command("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"])
            .output()
            .expect("running ping (apt-get install iputils-ping)");
    assert!(
        out.status.success(),
        "ping failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 received"));
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_tap() {
    common::require_environment();
    let ns = common::NetNs::new("stop");
    let app = common::Appliance::start(&ns, "sytstop");
    let (status, log) = app.stop();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("port stopped and closed") && log.contains("stopped cleanly"), "log:\n{log}");
    let out = std::process::Command::new("ip").args(["-n", &ns.name, "link", "show", "sytstop"]).output().unwrap();
    assert!(!out.status.success(), "the tap is still there after the appliance stopped");
}
