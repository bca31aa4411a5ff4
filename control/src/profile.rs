//! NIC profiles: one TOML per NIC kind (`nic-profiles/`), describing how to reach the device (bus,
//! driver, devargs) and what to ask of it (queues, descriptors, offloads, mempool). A profile is
//! a request; the port negotiates it against what the device reports and logs both.

use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigError;

/// The profiles compiled into the binary, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("net_tap", include_str!("../../nic-profiles/net_tap.toml")),
    ("net_memif", include_str!("../../nic-profiles/net_memif.toml")),
];

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NicProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub device: DeviceSection,
    #[serde(default)]
    pub queues: QueuesSection,
    #[serde(default)]
    pub offloads: OffloadsSection,
    #[serde(default)]
    pub mempool: MempoolSection,
    #[serde(default)]
    pub promiscuous: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// A virtual device created by EAL (`--vdev=DRIVER<n>,DEVARGS`).
    Vdev,
    /// A PCI device bound to a DPDK-capable driver (`-a ADDRESS,DEVARGS`); the port's devargs
    /// start with the PCI address.
    Pci,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub bus: Bus,
    /// The PMD's name (`net_tap`, `net_memif`, `mlx5_pci`, ...).
    pub driver: String,
    /// Devargs every port of this kind gets, before the port's own.
    #[serde(default)]
    pub devargs: String,
    /// The PMD needs EAL's multi-process channel (memif): the appliance then does not pass
    /// `--no-shconf`, and each process needs its own `eal.file_prefix`.
    #[serde(default)]
    pub mp_channel: bool,
}

/// Queue pairs and descriptors. `rx`/`tx` are the most queue pairs to use on this kind of device:
/// the appliance asks for one per core (`engine.cores`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueuesSection {
    #[serde(default = "one")]
    pub rx: u16,
    #[serde(default = "one")]
    pub tx: u16,
    #[serde(default = "desc")]
    pub rx_desc: u16,
    #[serde(default = "desc")]
    pub tx_desc: u16,
}

fn one() -> u16 {
    1
}
fn desc() -> u16 {
    1024
}

impl Default for QueuesSection {
    fn default() -> Self {
        QueuesSection { rx: 1, tx: 1, rx_desc: 1024, tx_desc: 1024 }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OffloadsSection {
    #[serde(default)]
    pub rx: Vec<String>,
    #[serde(default)]
    pub tx: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MempoolSection {
    #[serde(default = "mbufs")]
    pub mbufs: u32,
    #[serde(default = "cache")]
    pub cache: u32,
}

fn mbufs() -> u32 {
    8191
}
fn cache() -> u32 {
    256
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection { mbufs: mbufs(), cache: cache() }
    }
}

impl NicProfile {
    /// Parses a profile; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<NicProfile, ConfigError> {
        let p: NicProfile =
            toml::from_str(text).map_err(|e| ConfigError::Toml { file: origin.to_owned(), message: e.to_string() })?;
        p.validate(origin)?;
        Ok(p)
    }

    /// A built-in profile by name, or a profile file when `name` is a path (contains `/` or ends
    /// in `.toml`); relative paths are taken from `base` (the config file's folder).
    pub fn resolve(name: &str, base: Option<&Path>) -> Result<NicProfile, ConfigError> {
        if name.contains('/') || name.ends_with(".toml") {
            let path = match base {
                Some(b) if Path::new(name).is_relative() => b.join(name),
                _ => Path::new(name).to_path_buf(),
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::Io { file: path.display().to_string(), message: e.to_string() })?;
            return NicProfile::parse(&text, &path.display().to_string());
        }
        match BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => NicProfile::parse(text, &format!("built-in profile {n}")),
            None => Err(ConfigError::UnknownProfile {
                name: name.to_owned(),
                known: BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, value: String, why: &str| ConfigError::Value {
            file: origin.to_owned(),
            field: field.to_owned(),
            value,
            why: why.to_owned(),
        };
        if self.device.driver.is_empty() || !self.device.driver.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return Err(bad("device.driver", format!("{:?}", self.device.driver), "a PMD name such as net_tap"));
        }
        for (f, v) in [("queues.rx", self.queues.rx), ("queues.tx", self.queues.tx)] {
            if v == 0 {
                return Err(bad(f, v.to_string(), "at least 1 queue"));
            }
        }
        for (f, v) in [("queues.rx_desc", self.queues.rx_desc), ("queues.tx_desc", self.queues.tx_desc)] {
            if !(64..=32768).contains(&v) {
                return Err(bad(f, v.to_string(), "between 64 and 32768 descriptors"));
            }
        }
        if self.mempool.mbufs < 1024 {
            return Err(bad("mempool.mbufs", self.mempool.mbufs.to_string(), "at least 1024 mbufs"));
        }
        if self.mempool.cache > 512 || self.mempool.cache > self.mempool.mbufs / 2 {
            return Err(bad(
                "mempool.cache",
                self.mempool.cache.to_string(),
                "at most 512 and at most half of mempool.mbufs",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_parse() {
        for (name, _) in BUILT_IN {
            let p = NicProfile::resolve(name, None).unwrap();
            assert_eq!(&p.name, name);
        }
        let tap = NicProfile::resolve("net_tap", None).unwrap();
        assert_eq!(tap.device.bus, Bus::Vdev);
        assert_eq!(tap.queues.rx, 8);
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let e = NicProfile::resolve("net_tapp", None).unwrap_err().to_string();
        assert!(e.contains("net_tapp") && e.contains("net_tap"), "{e}");
    }

    #[test]
    fn profile_errors_name_the_field() {
        let base = "name = \"x\"\n[device]\nbus = \"vdev\"\ndriver = \"net_tap\"\n";
        let e = NicProfile::parse(&format!("{base}[queues]\nrx_desc = 8\n"), "p.toml").unwrap_err().to_string();
        assert!(e.contains("queues.rx_desc") && e.contains('8'), "{e}");
        let e = NicProfile::parse(&format!("{base}[queues]\nrxx = 1\n"), "p.toml").unwrap_err().to_string();
        assert!(e.contains("rxx") && e.contains("p.toml"), "{e}");
        let e = NicProfile::parse("name = \"x\"\n[device]\nbus = \"usb\"\ndriver = \"d\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("usb"), "{e}");
    }
}
