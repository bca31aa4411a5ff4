//! The unit tests of the configuration: the demo config, defaults, and an error for each bad value.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::Config;

#[test]
fn the_demo_config_is_valid() {
    let r = Config::demo();
    assert_eq!(r.ports.len(), 1);
    assert_eq!(r.ports[0].address, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(r.ports[0].prefix_len, 24);
    assert_eq!(r.config.services.len(), 3);
    let hold = r.config.services[2].listen();
    assert_eq!((r.config.services[2].kind(), hold.port, hold.backlog), ("hold", 9000, 2));
    assert_eq!((hold.policy.as_str(), hold.on_full.as_str()), ("bsd", "refuse"));
}

/// T1: 0 and 300 s are the edges.
#[test]
fn t1_time_wait_edges_are_accepted() {
    for v in [0, 300] {
        let text =
            format!("[engine]\ntime_wait_secs = {v}\n[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\n");
        assert_eq!(Config::parse(&text, "t", None).unwrap().config.engine.time_wait_secs, v);
    }
}

#[test]
fn buffer_idle_zero_turns_reclaim_off_and_defaults_to_30_s() {
    let port = "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\n";
    let parse = |engine: &str| Config::parse(&format!("{engine}{port}"), "t", None).unwrap().config.engine;
    assert_eq!(parse("").buffer_idle(), Some(Duration::from_secs(30)));
    assert_eq!(parse("[engine]\nbuffer_idle_secs = 0\n").buffer_idle(), None);
    assert_eq!(parse("[engine]\nbuffer_idle_secs = 86400\n").buffer_idle(), Some(Duration::from_secs(86400)));
}

#[test]
fn defaults_fill_what_is_left_out() {
    let r = Config::parse(
        "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.1.2/24\"\n[[service]]\nkind = \"http\"\n",
        "t",
        None,
    )
    .unwrap();
    assert_eq!(r.config.eal.memory_mb, 256);
    assert!(r.config.eal.no_huge);
    assert_eq!(r.config.services[0].port(), 80);
    assert_eq!(r.config.services[0].backlog(), 511);
    assert_eq!(r.config.services[0].listen().policy, "linux");
    assert_eq!(r.config.engine.time_wait_secs, 240);
    let sw = r.switch_config();
    assert_eq!((sw.max_first_data, sw.connect_timeout.as_secs()), (65536, 30));
    assert!(sw.fast_routes.is_empty());
}

/// `checksums = "none"` is taken on a memory wire; the default leaves them to the port.
#[test]
fn port_checksums_none_on_a_memory_wire() {
    let memif = |extra: &str| {
        Config::parse(&format!("[[port]]\nprofile = \"net_memif\"\naddress = \"198.18.0.2/24\"\n{extra}"), "t", None)
            .unwrap()
    };
    assert!(memif("checksums = \"none\"\n").ports[0].unchecked);
    assert!(!memif("").ports[0].unchecked);
    assert!(!memif("checksums = \"port\"\n").ports[0].unchecked);
}

#[test]
fn switch_fast_routes_parse_with_a_gateway() {
    let r = Config::parse(
        "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ngateway = \"198.18.0.1\"\n[switch]\nfast_routes = [\"198.19.0.0/16\"]\n",
        "t",
        None,
    )
    .unwrap();
    assert_eq!(r.switch_config().fast_routes, [("198.19.0.0".parse().unwrap(), 16)]);
}

/// Each bad config, and words its error must contain.
#[test]
fn bad_configs_name_the_field_and_value() {
    let port = "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\n";
    let cases: &[(String, &[&str])] = &[
        (format!("{port}[[service]]\nkind = \"echo\"\nprot = 7\n"), &["unknown field", "prot"]),
        (format!("{port}[[service]]\nkind = \"ftp\"\n"), &["ftp", "echo", "http"]),
        (format!("{port}[[service]]\nkind = \"echo\"\nport = 70000\n"), &["70000"]),
        (format!("{port}[[service]]\nkind = \"echo\"\nport = 0\n"), &["service[0].port", "0"]),
        (
            format!("{port}[[service]]\nkind = \"echo\"\n[[service]]\nkind = \"http\"\nport = 7\n"),
            &["service[1].port", "7", "already"],
        ),
        (format!("{port}[[service]]\nkind = \"echo\"\nbacklog = 2000000\n"), &["service[0].backlog", "2000000"]),
        (
            format!("{port}[[service]]\nkind = \"hold\"\nport = 9000\npolicy = \"berkeley\"\n"),
            &["service[0].policy", "berkeley", "bsd"],
        ),
        (
            format!("{port}[[service]]\nkind = \"hold\"\nport = 9000\non_full = \"reject\"\n"),
            &["service[0].on_full", "reject", "refuse"],
        ),
        (format!("{port}[[service]]\nkind = \"hold\"\n"), &["port"]),
        (format!("{port}[engine]\ntime_wait_secs = 301\n"), &["engine.time_wait_secs", "301", "300"]),
        (format!("{port}[engine]\nmax_backlog = 0\n"), &["engine.max_backlog", "0"]),
        (format!("{port}[engine]\nmax_connections = 0\n"), &["engine.max_connections", "0"]),
        // No test of this crate sets SWITCHYARD_ALLOW_FAULTS: a faulty wire is refused.
        (format!("{port}[port.faults]\nloss_percent = 5.0\n"), &["port[0].faults", "SWITCHYARD_ALLOW_FAULTS=1"]),
        (format!("{port}[engine]\nmax_time_wait = 16777217\n"), &["engine.max_time_wait", "16777217"]),
        (format!("{port}[engine]\nbuffer_idle_secs = 86401\n"), &["engine.buffer_idle_secs", "86401"]),
        (format!("{port}[engine]\ncores = 0\n"), &["engine.cores", "0"]),
        (format!("{port}[engine]\ntcp_timeout_secs = 0\n"), &["engine.tcp_timeout_secs"]),
        (
            "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2\"\n".into(),
            &["port[0].address", "198.18.0.2", "prefix"],
        ),
        ("[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.300/24\"\n".into(), &["port[0].address"]),
        ("[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/33\"\n".into(), &["port[0].address"]),
        (
            "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ngateway = \"198.19.0.1\"\n".into(),
            &["port[0].gateway", "198.19.0.1"],
        ),
        (
            "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ngateway = \"nope\"\n".into(),
            &["gateway", "nope"],
        ),
        ("[[port]]\nprofile = \"net_tapp\"\naddress = \"198.18.0.2/24\"\n".into(), &["net_tapp", "net_tap"]),
        (format!("{port}checksums = \"none\"\n"), &["port[0].checksums", "none", "net_tap", "net_memif"]),
        (format!("{port}checksums = \"off\"\n"), &["port[0].checksums", "off", "\"port\" or \"none\""]),
        (format!("{port}[switch]\nmax_first_data = 100\n"), &["switch.max_first_data", "100", "4096"]),
        (format!("{port}[switch]\nconnect_timeout_secs = 0\n"), &["switch.connect_timeout_secs", "0"]),
        (format!("{port}[switch]\nfast_routes = [\"198.19.0.0\"]\n"), &["switch.fast_routes[0]", "198.19.0.0"]),
        (format!("{port}[switch]\nfast_routes = [\"198.19.0.0/16\"]\n"), &["fast_routes[0]", "gateway"]),
        (format!("{port}[switch]\nfast_route = []\n"), &["unknown field", "fast_route"]),
        (format!("{port}[control]\nsocket = \"/tmp/\"\n"), &["control.socket", "/tmp/"]),
        (format!("{port}[control]\nsokcet = \"/tmp/x\"\n"), &["unknown field", "sokcet"]),
        (format!("{port}[metrics]\nlisten = \"localhost\"\n"), &["metrics.listen", "localhost", "ADDRESS:PORT"]),
        (format!("{port}[engine]\ndrain_secs = 3601\n"), &["engine.drain_secs", "3601"]),
        (
            format!("{port}[[service]]\nkind = \"proxy\"\nport = 8080\nupstreams = []\n"),
            &["service[0].upstreams", "at least one"],
        ),
        (
            format!("{port}[[service]]\nkind = \"proxy\"\nport = 8080\nupstreams = [\"198.18.0.1\"]\n"),
            &["service[0].upstreams[0]", "198.18.0.1", "ADDRESS:PORT"],
        ),
        (format!("{port}[[service]]\nkind = \"proxy\"\nport = 8080\n"), &["upstreams"]),
        (
            "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ndevargs = \"iface=a b\"\n".into(),
            &["port[0].devargs"],
        ),
        (format!("{port}[engine]\ntcp_rx_buffer = 10\n"), &["engine.tcp_rx_buffer", "10"]),
        (format!("{port}[engine]\nbusy_pol = true\n"), &["busy_pol"]),
        (format!("{port}[eal]\nmemory_mb = 1\n"), &["eal.memory_mb", "1"]),
        ("".into(), &["[[port]]"]),
        ("[[port]\n".into(), &["t.toml"]),
    ];
    for (text, words) in cases {
        let e = Config::parse(text, "t.toml", None).expect_err(text).to_string();
        assert!(e.starts_with("t.toml") || e.contains("profile"), "{e}");
        for w in *words {
            assert!(e.contains(w), "error for\n{text}\nwas {e:?}, lacks {w:?}");
        }
    }
}
