//! Binds the system DPDK found through pkg-config.
//!
//! Compiler flags come from `pkg-config --cflags libdpdk` and are passed unchanged to both bindgen
//! and cc (DESIGN fact 2); link flags come from the pkg-config crate. Nothing is hard-coded.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";
const INSTALL_HINT: &str = "libdpdk (>= 22.11) not found through pkg-config: install the Debian packages \
     with `apt-get update && apt-get install -y dpdk-dev libdpdk-dev pkg-config clang libclang-dev`";

fn fail(msg: &str) -> ! {
    // One line that says what to do; cargo prints it under the failed build script.
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // Emits the link flags of the shared DPDK libraries; EAL then dlopens the PMDs under its driver
    // directory at init (DESIGN fact 2).
    if let Err(e) = pkg_config::Config::new().atleast_version(MIN_VERSION).probe("libdpdk") {
        let e = e.to_string();
        match e.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(why) => fail(&format!("{INSTALL_HINT} (pkg-config: {why})")),
            None => fail(INSTALL_HINT),
        }
    }

    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| fail(INSTALL_HINT));
    // Passed in order, so pairs such as `-include rte_config.h` stay together.
    let cflags: Vec<String> = cflags.split_whitespace().map(str::to_owned).collect();

    let mut build = cc::Build::new();
    build.file("src/shim.c").opt_level(3).warnings(true);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("dpdk_shim");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        // EAL
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_version")
        .allowlist_function("rte_eal_remote_launch")
        .allowlist_function("rte_eal_wait_lcore")
        .allowlist_function("rte_get_next_lcore")
        .allowlist_function("rte_get_main_lcore")
        .allowlist_function("rte_lcore_count")
        .allowlist_function("rte_get_tsc_hz")
        // ethdev
        .allowlist_function("rte_eth_dev_count_avail")
        .allowlist_function("rte_eth_find_next")
        .allowlist_function("rte_eth_dev_info_get")
        .allowlist_function("rte_eth_dev_configure")
        .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_dev_start")
        .allowlist_function("rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close")
        .allowlist_function("rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_dev_get_name_by_port")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_dev_default_mac_addr_set")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_link_get_nowait")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_eth_dev_rx_offload_name")
        .allowlist_function("rte_eth_dev_tx_offload_name")
        // mempool / mbuf
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_mempool_avail_count")
        .allowlist_function("rte_mempool_in_use_count")
        // the shim: DPDK's static-inline functions and macros
        .allowlist_function("sy_.*")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_ETH_LINK_UP")
        .allowlist_var("RTE_ETH_FLOW_.*")
        .allowlist_var("RTE_MBUF_F_(RX_IP_CKSUM|RX_L4_CKSUM|TX_IPV4|TX_IP_CKSUM|TX_TCP_CKSUM).*")
        // Telemetry: our own commands beside DPDK's
        .allowlist_function("rte_telemetry_register_cmd")
        .allowlist_function("rte_tel_data_start_dict")
        .allowlist_function("rte_tel_data_start_array")
        .allowlist_function("rte_tel_data_add_dict_string")
        .allowlist_function("rte_tel_data_add_dict_u64")
        .allowlist_function("rte_tel_data_add_array_string")
        .allowlist_function("rte_tel_data_add_array_u64")
        .allowlist_var("RTE_TEL_MAX_STRING_LEN")
        // Capture
        .allowlist_function("rte_pcapng_fdopen")
        .allowlist_function("rte_pcapng_close")
        .allowlist_function("rte_pcapng_copy")
        .allowlist_function("rte_pcapng_mbuf_size")
        .allowlist_function("rte_pcapng_write_packets")
        .allowlist_type("rte_pcapng_direction")
        // Only ever handled through pointers and shim accessors: keep their layout out of Rust.
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen could not parse the DPDK headers ({e}); {INSTALL_HINT}")));
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs to OUT_DIR");
}
