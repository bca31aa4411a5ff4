//! Figures (min, median, max of a set of runs), the summary they go into, and the host's steal.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

/// Min, median and max of `runs` (the median of an even count is the mean of the middle two).
/// `None` for no runs.
pub fn mmm(runs: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = runs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some((v[0], median, v[n - 1]))
}

/// The median of `runs`, if any.
pub fn median(runs: &[f64]) -> Option<f64> {
    mmm(runs).map(|(_, m, _)| m)
}

/// A number for people: no decimals from 100 on, with thousands separated; else three
/// significant digits.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x.abs() >= 100.0 {
        let s = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if x < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// Everything measured: per suite, its figures (each with its command line and its runs); the
/// headline ratios; the lines of the human summary.
#[derive(Default)]
pub struct Report {
    pub suites: BTreeMap<String, Map<String, Value>>,
    pub headline: BTreeMap<&'static str, Option<f64>>,
    pub lines: Vec<String>,
}

impl Report {
    /// Records a figure measured over `runs` (in run order) as min/median/max, and its line in the
    /// human summary; returns its median.
    pub fn figure(&mut self, suite: &str, key: &str, label: &str, unit: &str, runs: &[f64], command: &str) -> f64 {
        let (lo, med, hi) = mmm(runs).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        let finite = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        self.note(
            suite,
            key,
            json!({
                "unit": unit,
                "min": finite(lo),
                "median": finite(med),
                "max": finite(hi),
                "runs": runs.iter().map(|&x| finite(x)).collect::<Vec<_>>(),
                "command": command,
            }),
        );
        let spread = if runs.len() > 1 { format!(" (min {}, max {})", num(lo), num(hi)) } else { String::new() };
        self.lines.push(format!("  {label}: {} {unit}{spread}", num(med)));
        med
    }

    /// Records any other value of a suite (settings, counters, a ratio of medians).
    pub fn note(&mut self, suite: &str, key: &str, value: Value) {
        self.suites.entry(suite.to_owned()).or_default().insert(key.to_owned(), value);
    }

    /// A line of the human summary.
    pub fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }
}

/// The hypervisor's steal on every CPU so far (clock ticks from /proc/stat), and when it was read:
/// the time the host ran something else while a vCPU had work. The machines are VMs on shared
/// hosts; a stolen share slows a run from outside, whatever the code does.
#[derive(Clone, Debug)]
pub struct Steal {
    ticks: Vec<u64>,
    at: Instant,
}

impl Steal {
    pub fn now() -> Result<Steal> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let ticks = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| l.split_whitespace().nth(8).and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect();
        Ok(Steal { ticks, at: Instant::now() })
    }

    /// The share of the wall time since `earlier` stolen from each CPU, in percent.
    pub fn percent_since(&self, earlier: &Steal) -> Vec<f64> {
        // SAFETY: sysconf reads a constant of the system; it takes no pointer.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        self.ticks.iter().zip(&earlier.ticks).map(|(b, a)| 100.0 * b.saturating_sub(*a) as f64 / hz / wall).collect()
    }

    /// The share stolen from CPUs 0 and 1 since `earlier`, in percent (the benchmarks' CPUs).
    pub fn two_since(&self, earlier: &Steal) -> [f64; 2] {
        let p = self.percent_since(earlier);
        [p.first().copied().unwrap_or(0.0), p.get(1).copied().unwrap_or(0.0)]
    }
}

/// Steal samples of a set of runs, CPU 0 and CPU 1 each: their medians and maxima for the summary.
#[derive(Default)]
pub struct StealLog {
    pub cpu: [Vec<f64>; 2],
}

impl StealLog {
    pub fn push(&mut self, s: [f64; 2]) {
        self.cpu[0].push(s[0]);
        self.cpu[1].push(s[1]);
    }

    pub fn json(&self) -> Value {
        json!({ "cpu0_percent": self.cpu[0], "cpu1_percent": self.cpu[1] })
    }

    /// "CPU 0 m% (max x), CPU 1 m% (max x)".
    pub fn human(&self) -> String {
        let one = |v: &[f64]| match mmm(v) {
            Some((_, m, hi)) => format!("{m:.1}% (max {hi:.1})"),
            None => "-".into(),
        };
        format!("CPU 0 {}, CPU 1 {}", one(&self.cpu[0]), one(&self.cpu[1]))
    }
}
