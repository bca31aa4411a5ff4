//! The control block's private numbers, read from its `Debug` output (the engine exposes no
//! accessor for them, and the target does not change the control block's files): the first
//! fields on every operation, cheaply (taken as they are written, the output stopped at `lost`),
//! the sent-segment records and the out-of-order ranges on the deep checks.

use std::fmt::Write as _;

use engine::tcp::conn::Tcb;

pub fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// The fields [`Numbers`] takes, in the order the control block's `Debug` writes them.
const NAMES: [&str; 8] = ["snd_una", "snd_nxt", "snd_max", "snd_wnd", "tx", "pipe", "cwnd", "sent"];

/// Takes the numbers of [`NAMES`] from `Debug` output as it is written (a field's name, `: `,
/// then its digits in one piece), and fails the formatting (which ends it) at `lost`, the field
/// after the last: no string is built or searched.
#[derive(Default)]
struct Grab {
    vals: [u64; NAMES.len()],
    found: u32,
    want: Option<usize>,
}

impl std::fmt::Write for Grab {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s == "lost" {
            return Err(std::fmt::Error);
        }
        if s == ": " {
            return Ok(());
        }
        if let Some(i) = self.want.take() {
            if let Ok(v) = s.parse() {
                self.vals[i] = v;
                self.found |= 1 << i;
                return Ok(());
            }
        }
        self.want = NAMES.iter().position(|n| *n == s);
        Ok(())
    }
}

/// The number after `key` (` name: `) in `s`.
fn field(s: &str, key: &str) -> u64 {
    let at = s.find(key).unwrap_or_else(|| panic!("no{key}in the control block's Debug: {s}")) + key.len();
    let end = s[at..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |i| at + i);
    s[at..end].parse().unwrap_or_else(|_| panic!("{key} is not a number in {s}"))
}

/// The control block's sequence-space numbers and counts.
#[derive(Debug)]
pub struct Numbers {
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub snd_max: u32,
    pub snd_wnd: u32,
    pub tx: usize,
    pub pipe: u32,
    pub cwnd: u32,
    /// Sent-segment records.
    pub sent: usize,
}

impl Numbers {
    pub fn read(t: &Tcb) -> Numbers {
        let mut g = Grab::default();
        let _ = write!(g, "{t:?}");
        assert_eq!(g.found, (1 << NAMES.len()) - 1, "fields {NAMES:?} not all in the control block's Debug: {t:?}");
        let v = g.vals;
        Numbers {
            snd_una: v[0] as u32,
            snd_nxt: v[1] as u32,
            snd_max: v[2] as u32,
            snd_wnd: v[3] as u32,
            tx: v[4] as usize,
            pipe: v[5] as u32,
            cwnd: v[6] as u32,
            sent: v[7] as usize,
        }
    }
}

/// The sent-segment records, as `[seq, end)` from SND.UNA, and the out-of-order ranges, as
/// `[start, end)` from RCV.NXT.
pub struct Deep {
    pub records: Vec<(u32, u32)>,
    pub ooo: Vec<(u32, u32)>,
}

impl Deep {
    pub fn read(t: &Tcb) -> Deep {
        let s = format!("{t:?}");
        let between = |from: &str, to: &str| -> &str {
            let a = s.find(from).unwrap_or_else(|| panic!("no {from} in {s}")) + from.len();
            let b = a + s[a..].find(to).unwrap_or_else(|| panic!("no {to} after {from} in {s}"));
            &s[a..b]
        };
        let records = between("records: [", "], timers")
            .split('(')
            .skip(1)
            .map(|r| {
                let mut n = r.split(", ").map(|x| x.trim_end_matches(')'));
                let mut num = || n.next().and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("a record: {r}"));
                (num(), num())
            })
            .collect();
        let ooo = between("ooo: Reassembly { ranges: [", "], max")
            .split("Range {")
            .skip(1)
            .map(|r| (field(r, " start: ") as u32, field(r, " end: ") as u32))
            .collect();
        Deep { records, ooo }
    }
}
