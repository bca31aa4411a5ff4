//! NIC profiles: one TOML per NIC kind (`nic-profiles/`), describing how to reach the device (bus,
//! driver, devargs) and what to ask of it (queues, descriptors, offloads, mempool). A profile is
//! a request; the port negotiates it against what the device reports and logs both.

use std::path::Path;

use serde::Deserialize;

/// Why a profile was rejected. Every message names the file (or the built-in profile) it came
/// from. This module depends on nothing else in the crate: a configuration whose port names a bad
/// profile wraps this error in its own.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profile file could not be read.
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// The profile is not valid TOML, or has a field that is unknown or of the wrong type.
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    /// A field's value is out of its range.
    #[error("{file}: {field} = {value}: {why}")]
    Value { file: String, field: String, value: String, why: String },
    /// The name is neither a built-in profile nor a path.
    #[error("unknown NIC profile {name:?}: the built-in ones are {known}, or give a path to a profile TOML")]
    Unknown { name: String, known: String },
}

/// The profiles compiled into the binary, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("net_tap", include_str!("../../nic-profiles/net_tap.toml")),
    ("net_memif", include_str!("../../nic-profiles/net_memif.toml")),
    ("net_ring", include_str!("../../nic-profiles/net_ring.toml")),
    ("net_af_packet", include_str!("../../nic-profiles/net_af_packet.toml")),
    ("virtio", include_str!("../../nic-profiles/virtio.toml")),
    ("mlx5", include_str!("../../nic-profiles/mlx5.toml")),
    ("ice", include_str!("../../nic-profiles/ice.toml")),
    ("i40e", include_str!("../../nic-profiles/i40e.toml")),
    ("ixgbe", include_str!("../../nic-profiles/ixgbe.toml")),
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
    /// Receive-side scaling, used when the port has several rx queues (engine.cores > 1).
    #[serde(default)]
    pub rss: Option<RssSection>,
}

/// RSS: the Toeplitz key and the hash types. With a key the appliance sets, the engines know where
/// the NIC puts a flow, and outgoing connections pick source ports whose replies come back to
/// their own core.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RssSection {
    /// `"symmetric"` (0x6d5a repeated, at the device's key length: both directions of a flow hash
    /// alike), or the key in hex (40 or 52 bytes).
    #[serde(default = "symmetric")]
    pub key: String,
    /// Hash types: ipv4, ipv4-frag, ipv4-tcp, ipv4-udp, ipv4-sctp, ipv4-other, ipv6, ipv6-frag,
    /// ipv6-tcp, ipv6-udp.
    pub hash: Vec<String>,
}

fn symmetric() -> String {
    "symmetric".into()
}

impl RssSection {
    /// The key bytes, or `None` for the symmetric key.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        if self.key == "symmetric" {
            return None;
        }
        (0..self.key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(self.key.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
    }

    /// The request a port is opened with.
    pub fn request(&self) -> dpdk::RssRequest {
        dpdk::RssRequest { key: self.key_bytes(), hash: self.hash.clone() }
    }

    /// The first 40 bytes of the key, as the engines' software Toeplitz uses it.
    pub fn steering_key(&self) -> [u8; 40] {
        let k = self.key_bytes().unwrap_or_else(|| dpdk::symmetric_key(40));
        let mut out = [0u8; 40];
        out.copy_from_slice(&k[..40]);
        out
    }
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
    pub fn parse(text: &str, origin: &str) -> Result<NicProfile, ProfileError> {
        let p: NicProfile =
            toml::from_str(text).map_err(|e| ProfileError::Toml { file: origin.to_owned(), message: e.to_string() })?;
        p.validate(origin)?;
        Ok(p)
    }

    /// A built-in profile by name, or a profile file when `name` is a path (contains `/` or ends
    /// in `.toml`); relative paths are taken from `base` (the config file's folder).
    pub fn resolve(name: &str, base: Option<&Path>) -> Result<NicProfile, ProfileError> {
        if name.contains('/') || name.ends_with(".toml") {
            let path = match base {
                Some(b) if Path::new(name).is_relative() => b.join(name),
                _ => Path::new(name).to_path_buf(),
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ProfileError::Io { file: path.display().to_string(), message: e.to_string() })?;
            return NicProfile::parse(&text, &path.display().to_string());
        }
        match BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => NicProfile::parse(text, &format!("built-in profile {n}")),
            None => Err(ProfileError::Unknown {
                name: name.to_owned(),
                known: BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ProfileError> {
        let bad = |field: &str, value: String, why: &str| ProfileError::Value {
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
        for (dir, names) in [("offloads.rx", &self.offloads.rx), ("offloads.tx", &self.offloads.tx)] {
            if let Some(n) = names.iter().find(|n| !dpdk::known_offload(dir == "offloads.rx", n)) {
                return Err(bad(
                    dir,
                    format!("{n:?}"),
                    "an offload name DPDK knows (rte_eth_dev_*_offload_name: IPV4_CKSUM, TCP_CKSUM, MULTI_SEGS, ...)",
                ));
            }
        }
        if let Some(rss) = &self.rss {
            if rss.key != "symmetric" {
                let ok = rss.key.len() % 2 == 0 && rss.key_bytes().is_some_and(|k| k.len() == 40 || k.len() == 52);
                if !ok {
                    return Err(bad(
                        "rss.key",
                        format!("{:?}", rss.key),
                        "\"symmetric\", or a key of 40 or 52 bytes in hex (80 or 104 hex digits)",
                    ));
                }
            }
            if rss.hash.is_empty() {
                return Err(bad("rss.hash", "[]".into(), "at least one hash type, e.g. [\"ipv4-tcp\"]"));
            }
            if let Err(name) = dpdk::rss_mask(&rss.hash) {
                let known: Vec<&str> = dpdk::RSS_TYPES.iter().map(|(n, _)| *n).collect();
                return Err(bad("rss.hash", format!("{name:?}"), &format!("one of {}", known.join(", "))));
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

    /// Every file in nic-profiles/ is a valid profile named after its file, and built in.
    #[test]
    fn every_profile_file_is_valid_and_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nic-profiles");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let p = NicProfile::resolve(path.to_str().unwrap(), None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(p.name.as_str()), path.file_stem().and_then(|s| s.to_str()), "{}", path.display());
            names.push(p.name);
        }
        names.sort();
        let mut built: Vec<String> = BUILT_IN.iter().map(|(n, _)| (*n).to_owned()).collect();
        built.sort();
        assert_eq!(names, built);
        let mlx5 = NicProfile::resolve("mlx5", None).unwrap();
        assert_eq!(mlx5.device.bus, Bus::Pci);
        assert_eq!(mlx5.rss.unwrap().key_bytes(), None, "symmetric");
    }

    #[test]
    fn rss_and_offload_errors_name_the_field() {
        let base = "name = \"x\"\n[device]\nbus = \"pci\"\ndriver = \"net_ice\"\n";
        let cases: &[(&str, &[&str])] = &[
            ("[rss]\nkey = \"zz\"\nhash = [\"ipv4\"]\n", &["rss.key", "zz", "40 or 52"]),
            ("[rss]\nkey = \"6d5a\"\nhash = [\"ipv4\"]\n", &["rss.key", "6d5a"]),
            ("[rss]\nhash = [\"ipv4-tcpp\"]\n", &["rss.hash", "ipv4-tcpp", "ipv4-tcp"]),
            ("[rss]\nhash = []\n", &["rss.hash", "at least one"]),
            ("[rss]\nhash = [\"ipv4\"]\nkeys = 1\n", &["unknown field", "keys"]),
            ("[offloads]\nrx = [\"TCP_CSUM\"]\n", &["offloads.rx", "TCP_CSUM", "IPV4_CKSUM"]),
            ("[offloads]\ntx = [\"LRO\"]\n", &["offloads.tx", "LRO"]),
        ];
        for (extra, words) in cases {
            let e = NicProfile::parse(&format!("{base}{extra}"), "p.toml").unwrap_err().to_string();
            for w in *words {
                assert!(e.contains(w), "{extra:?}: {e:?} lacks {w:?}");
            }
        }
        let key = "6d5a".repeat(26); // 52 bytes
        let ok =
            NicProfile::parse(&format!("{base}[rss]\nkey = \"{key}\"\nhash = [\"ipv4-tcp\"]\n"), "p.toml").unwrap();
        assert_eq!(ok.rss.unwrap().key_bytes().unwrap().len(), 52);
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
