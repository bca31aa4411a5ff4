//! `bench --report`: BENCHMARKS.md's table, generated from a `summary.json`.

use anyhow::{Context, Result};
use serde_json::Value;

/// The headline keys with their target, as BENCHMARKS.md states them.
const TARGETS: &[(&str, &str, &str)] = &[
    ("short_conns_per_s_ratio", "short connections/s, fast path over Linux (two processes, paired median)", ">= 20x"),
    ("requests_per_s_ratio", "requests/s, fast path over Linux (two processes, paired median)", ">= 10x"),
    ("engine_share_of_wire_ceiling", "engine frames per busy second over the one-process testpmd ceiling", ">= 0.5"),
    ("instructions_per_request", "instructions per request (callgrind, engine in memory)", "<= 1,200 (issue 26)"),
    ("per_packet_1m_over_1k", "time per request at 1M established over 1k (engine in memory)", "<= 1.2"),
    ("syn_cookies_per_core_s_wire", "SYN cookies per core second on the memif wire (flood suite)", ">= 2M (issue 27)"),
    (
        "clients_served_under_flood_percent",
        "clients served under a paced SYN flood with cookies, % (flood suite)",
        ">= 99 (issue 27)",
    ),
];

fn num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v);
        // Thousands separators.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The Markdown for the figures in `summary`: the command and machine, the headline keys against
/// their targets, then every figure that has runs, with min, median and max.
pub fn markdown(summary: &Value) -> String {
    let mut out = String::new();
    let commit = summary["commit"]["id"].as_str().unwrap_or("unknown");
    let dirty = if summary["commit"]["dirty"].as_bool() == Some(true) { " (with uncommitted changes)" } else { "" };
    let m = &summary["machine"];
    out.push_str(&format!(
        "Command, as root: `{}` on commit `{}`{dirty}, {} s.\n\n",
        summary["command"].as_str().unwrap_or("?"),
        &commit[..commit.len().min(12)],
        m["wall_secs"].as_f64().map_or("?".into(), |s| format!("{s:.0}")),
    ));
    out.push_str(&format!(
        "Machine: {}, {} CPUs, {:.1} GiB; host steal over the run {}; load average before {}, after {}.\n\n",
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cpus"],
        m["memory_gib"].as_f64().unwrap_or(0.0),
        m["steal_percent"].as_object().map_or("?".into(), |o| o
            .iter()
            .map(|(k, v)| format!("{k} {:.1} %", v.as_f64().unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join(", ")),
        m["loadavg_before"],
        m["loadavg_after"],
    ));
    if let Some(e) = summary["error"].as_str() {
        out.push_str(&format!("The run stopped early: {e}\n\n"));
    }
    out.push_str("| headline | figure | target |\n| --- | --- | --- |\n");
    for (key, what, target) in TARGETS {
        let v = summary[key].as_f64().map_or("not measured".into(), num);
        out.push_str(&format!("| {what} (`{key}`) | {v} | {target} |\n"));
    }
    out.push_str("\n| suite | figure | unit | min | median | max |\n| --- | --- | --- | --- | --- | --- |\n");
    if let Some(suites) = summary["suites"].as_object() {
        for (suite, figures) in suites {
            let Some(figures) = figures.as_object() else { continue };
            for (name, f) in figures {
                let (Some(min), Some(median), Some(max)) = (f["min"].as_f64(), f["median"].as_f64(), f["max"].as_f64())
                else {
                    continue;
                };
                let unit = f["unit"].as_str().unwrap_or("");
                out.push_str(&format!(
                    "| {suite} | {} | {unit} | {} | {} | {} |\n",
                    name.replace('_', " "),
                    num(min),
                    num(median),
                    num(max)
                ));
            }
        }
    }
    out
}

/// Reads `path` and prints its Markdown.
pub fn print(path: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let summary: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    print!("{}", markdown(&summary));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_becomes_a_table_of_headlines_and_figures() {
        let s = json!({
            "command": "target/release/bench",
            "commit": {"id": "0123456789abcdef", "dirty": false},
            "machine": {"cpu_model": "X", "cpus": 2, "memory_gib": 24.0, "wall_secs": 400.0,
                        "steal_percent": {"cpu0": 0.5}, "loadavg_before": [1.0], "loadavg_after": [2.0]},
            "short_conns_per_s_ratio": 14.08, "requests_per_s_ratio": null,
            "instructions_per_request": 3436.8,
            "suites": {"wire": {"two_process_short": {"unit": "conns/s", "min": 80119.7, "median": 121414.4, "max": 240236.4},
                                "note": 3}},
            "error": null
        });
        let md = markdown(&s);
        assert!(md.contains("`target/release/bench` on commit `0123456789ab`, 400 s"), "{md}");
        assert!(md.contains("| 14.1 | >= 20x |"), "{md}");
        assert!(md.contains("(`requests_per_s_ratio`) | not measured |"), "{md}");
        assert!(md.contains("| 3,437 |"), "{md}");
        assert!(md.contains("| wire | two process short | conns/s | 80,120 | 121,414 | 240,236 |"), "{md}");
        assert!(!md.contains("note"), "figures without runs are left out");
    }
}
