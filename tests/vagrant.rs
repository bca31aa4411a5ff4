//! The VM's provisioning script (`vagrant/provision.sh`) runs here too, minus the NIC binding and
//! systemd, so it does not rot: packages, hugepages, build, install, config, config check. What it
//! changes on this machine is put back (hugepages, a hugetlbfs mount it made, its files).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_owned()
}

#[test]
fn provision_script_runs_here_without_the_nic_binding() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "provisioning needs root (hugepages, packages): run `sudo make test`");
    let dir = std::env::temp_dir().join(format!("syt-provision-{}", std::process::id()));
    let hugepages_before = read("/proc/sys/vm/nr_hugepages");
    let mounted_before = Command::new("mountpoint").args(["-q", "/dev/hugepages"]).status().is_ok_and(|s| s.success());
    let dir_before = std::path::Path::new("/dev/hugepages").exists();
    let want: u64 = hugepages_before.parse::<u64>().unwrap_or(0) + 8;
    let out = Command::new(repo().join("vagrant/provision.sh"))
        .args(["--no-bind", "--no-systemd", "--no-persist", "--build", "debug", "--prefix"])
        .arg(dir.join("usr"))
        .arg("--etc")
        .arg(dir.join("etc"))
        .env("HUGEPAGES", want.to_string())
        .output()
        .expect("running vagrant/provision.sh");
    // Put the machine back first, whatever happened.
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", &hugepages_before);
    if !mounted_before {
        let _ = Command::new("umount").arg("/dev/hugepages").output();
    }
    if !dir_before {
        let _ = std::fs::remove_dir("/dev/hugepages");
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let installed = dir.join("usr/bin/switchyard");
    let config = dir.join("etc/switchyard.toml");
    let version = Command::new(&installed).arg("--version").output();
    let check = Command::new(&installed).args(["check", "--config"]).arg(&config).output();
    let config_text = std::fs::read_to_string(&config).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(out.status.success(), "provision.sh failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("hugepages:") && stdout.contains(&format!("of {want} 2 MiB pages reserved")), "{stdout}");
    assert!(version.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("switchyard")));
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "the written config does not pass `switchyard check`:\n{config_text}"
    );
    assert!(config_text.contains("profile = \"net_tap\""), "{config_text}");
    assert_eq!(read("/proc/sys/vm/nr_hugepages"), hugepages_before, "hugepages given back");
}

#[test]
fn vagrantfile_has_the_second_virtio_nic_and_runs_the_provisioning_script() {
    let v = std::fs::read_to_string(repo().join("vagrant/Vagrantfile")).unwrap();
    for needle in ["debian/bookworm64", "private_network", "nic_type: \"virtio\"", "vagrant/provision.sh", "HUGEPAGES="]
    {
        assert!(v.contains(needle), "Vagrantfile lacks {needle:?}");
    }
    let syntax = Command::new("bash").arg("-n").arg(repo().join("vagrant/provision.sh")).status().unwrap();
    assert!(syntax.success(), "provision.sh has a syntax error");
}
