//! The Markdown table: medians across rounds, ratios to direct, and pass/fail against
//! the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::median;

/// Samples per (metric, target), one per round.
pub(crate) type Samples = BTreeMap<(String, &'static str), Vec<f64>>;

#[derive(Debug, Clone, Copy)]
enum Goal {
    /// No target of its own; berth must still beat socat and HAProxy.
    None,
    /// berth ÷ direct at most this (latency).
    RatioAtMost(f64),
    /// berth ÷ direct at least this (throughput).
    RatioAtLeast(f64),
    /// berth's own value at most this.
    AtMost(f64),
    /// Memory kept after the sessions closed: at most 1 MiB or a quarter of the growth.
    Released,
    /// Shown, not judged.
    Info,
}

#[derive(Debug)]
struct Row {
    key: String,
    label: String,
    unit: &'static str,
    higher_better: bool,
    goal: Goal,
    /// Whether berth must beat the other forwarders on this row.
    compete: bool,
}

fn rows(idle_n: usize) -> Vec<Row> {
    let mut v = Vec::new();
    let mut row = |key: &str, label: String, unit, higher_better, goal, compete| {
        v.push(Row {
            key: key.into(),
            label,
            unit,
            higher_better,
            goal,
            compete,
        });
    };
    for (fresh, goals) in [(false, [1.20, 1.15]), (true, [1.30, 1.30])] {
        let how = if fresh {
            "fresh connection"
        } else {
            "keep-alive"
        };
        let tag = if fresh { "fresh" } else { "ka" };
        for (i, (name, path)) in [("ping", "/_ping"), ("json", "/containers/json")]
            .into_iter()
            .enumerate()
        {
            row(
                &format!("{name}-{tag}.p50"),
                format!("`GET {path}` p50, {how}"),
                "µs",
                false,
                Goal::RatioAtMost(goals[i]),
                true,
            );
            row(
                &format!("{name}-{tag}.p99"),
                format!("`GET {path}` p99, {how}"),
                "µs",
                false,
                Goal::None,
                true,
            );
        }
    }
    for (n, goal) in [(1, 0.80), (16, 0.85), (64, 0.85), (256, 0.85)] {
        row(
            &format!("rps-{n}"),
            format!(
                "`GET /_ping` req/s, {n} connection{}",
                if n == 1 { "" } else { "s" }
            ),
            "req/s",
            true,
            Goal::RatioAtLeast(goal),
            true,
        );
    }
    row(
        "download",
        "download `GET /images/{name}/get`".into(),
        "MiB/s",
        true,
        Goal::RatioAtLeast(0.95),
        true,
    );
    row(
        "load",
        "upload `POST /images/load`".into(),
        "MiB/s",
        true,
        Goal::RatioAtLeast(0.97),
        true,
    );
    row(
        "archive",
        "upload `PUT /containers/{id}/archive`".into(),
        "MiB/s",
        true,
        Goal::RatioAtLeast(0.95),
        true,
    );
    row(
        "hijack",
        "hijack: exec `cat`, bytes checked".into(),
        "MiB/s",
        true,
        Goal::RatioAtLeast(0.90),
        true,
    );
    row(
        "hijack-attach",
        "hijack: attach to `cat`, bytes checked".into(),
        "MiB/s",
        true,
        Goal::RatioAtLeast(0.90),
        true,
    );
    row(
        "mem.end",
        "memory after the rows above, each round".into(),
        "MiB",
        false,
        Goal::Info,
        false,
    );
    row(
        "idle.rss",
        format!("{idle_n} idle hijacks open: memory (fresh instance)"),
        "MiB",
        false,
        Goal::AtMost(16.0),
        true,
    );
    row(
        "idle.growth",
        format!("{idle_n} idle hijacks open: memory growth"),
        "MiB",
        false,
        Goal::None,
        true,
    );
    row(
        "idle.retained",
        "idle hijacks closed: memory kept".into(),
        "MiB",
        false,
        Goal::Released,
        false,
    );
    v
}

fn fmt_value(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "—".into();
    }
    match unit {
        "µs" if v < 100.0 => format!("{v:.1}"),
        "MiB" => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

fn goal_text(g: Goal) -> String {
    match g {
        Goal::None => "—".into(),
        Goal::RatioAtMost(x) => format!("≤ {x:.2}×"),
        Goal::RatioAtLeast(x) => format!("≥ {x:.2}×"),
        Goal::AtMost(x) => format!("≤ {x:.0} MiB"),
        Goal::Released => "released".into(),
        Goal::Info => "(info)".into(),
    }
}

/// The report's verdicts, for the summary.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) table: String,
    pub(crate) misses: Vec<String>,
}

/// Renders the table for the targets in `targets` (in column order).
pub(crate) fn table(samples: &Samples, targets: &[&'static str], idle_n: usize) -> Verdict {
    let med = |key: &str, t: &'static str| {
        samples
            .get(&(key.to_owned(), t))
            .map_or(f64::NAN, |v| median(v))
    };
    let has_direct = targets.contains(&"direct");
    let others: Vec<&'static str> = targets.iter().copied().filter(|t| *t != "direct").collect();
    let mut out = String::new();
    let mut head = String::from("| Row | Unit |");
    let mut rule = String::from("|---|---|");
    for t in targets {
        let _ = write!(head, " {t} |");
        rule.push_str("---:|");
    }
    if has_direct {
        for t in &others {
            let _ = write!(head, " {t} ÷ direct |");
            rule.push_str("---:|");
        }
    }
    head.push_str(" Target | berth |");
    rule.push_str("---|---|");
    let _ = writeln!(out, "{head}\n{rule}");
    let mut misses = Vec::new();
    for r in rows(idle_n) {
        if !targets
            .iter()
            .any(|t| samples.contains_key(&(r.key.clone(), *t)))
        {
            continue;
        }
        let _ = write!(out, "| {} | {} |", r.label, r.unit);
        for t in targets {
            let _ = write!(out, " {} |", fmt_value(med(&r.key, t), r.unit));
        }
        // Each round's value over the same round's direct value (measured moments apart),
        // then the median of those: steadier than a ratio of medians when other work on
        // the machine comes and goes between rounds.
        let per_round = |t: &'static str| -> Option<Vec<f64>> {
            let v = samples.get(&(r.key.clone(), t))?;
            let d = samples.get(&(r.key.clone(), "direct"))?;
            (v.len() == d.len() && v.len() > 1)
                .then(|| v.iter().zip(d).map(|(a, b)| a / b).collect())
        };
        let ratio_of = |t: &'static str| -> f64 {
            let (Some(v), Some(d)) = (
                samples.get(&(r.key.clone(), t)),
                samples.get(&(r.key.clone(), "direct")),
            ) else {
                return f64::NAN;
            };
            if v.len() == d.len() {
                let per_round: Vec<f64> = v.iter().zip(d).map(|(a, b)| a / b).collect();
                median(&per_round)
            } else {
                median(v) / median(d)
            }
        };
        if has_direct {
            for t in &others {
                let ratio = ratio_of(t);
                let spread = per_round(t)
                    .filter(|_| *t == "berth")
                    .map(|v| {
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        format!(" ({lo:.2}–{hi:.2})")
                    })
                    .unwrap_or_default();
                if ratio.is_finite() {
                    let _ = write!(out, " {ratio:.2}×{spread} |");
                } else {
                    out.push_str(" — |");
                }
            }
        }
        let berth = med(&r.key, "berth");
        let mut fails = Vec::new();
        // A ratio target without a direct measurement (`--targets berth`) is not judged.
        let mut unjudged = false;
        if !berth.is_nan() {
            let ratio = ratio_of("berth");
            let ok = match r.goal {
                Goal::None | Goal::Info => true,
                Goal::RatioAtMost(_) | Goal::RatioAtLeast(_) if !ratio.is_finite() => {
                    unjudged = true;
                    true
                }
                Goal::RatioAtMost(x) => ratio <= x,
                Goal::RatioAtLeast(x) => ratio >= x,
                Goal::AtMost(x) => berth <= x,
                Goal::Released => {
                    let growth = med("idle.rss", "berth") - med("idle.before", "berth");
                    berth <= 1.0f64.max(0.25 * growth)
                }
            };
            if !ok {
                fails.push(format!("misses {}", goal_text(r.goal)));
            }
            if r.compete {
                for t in ["socat", "haproxy"] {
                    // Compared as ratios to direct where there is one, else as values.
                    let (ours, theirs) = if ratio.is_finite() {
                        (ratio, ratio_of(t))
                    } else {
                        (berth, med(&r.key, t))
                    };
                    let worse = if r.higher_better {
                        ours <= theirs
                    } else {
                        ours >= theirs
                    };
                    if worse {
                        fails.push(format!("loses to {t}"));
                    }
                }
            }
        }
        let verdict = if berth.is_nan() || matches!(r.goal, Goal::Info) {
            "—".to_owned()
        } else if unjudged && fails.is_empty() {
            "not judged (no direct)".to_owned()
        } else if fails.is_empty() {
            "pass".to_owned()
        } else {
            misses.push(format!("{}: {}", r.label, fails.join(", ")));
            format!("**FAIL**: {}", fails.join(", "))
        };
        let _ = writeln!(out, " {} | {verdict} |", goal_text(r.goal));
    }
    let _ = writeln!(
        out,
        "\nValues are medians across rounds. Ratio = target ÷ direct, taken in each round \
         and the median of those shown (for berth also the lowest and highest round): for µs and MiB lower is better (a ratio above 1 is \
         slower), for req/s and MiB/s higher is better (a ratio below 1 is slower). \
         \"berth\" fails a row that misses its target or where socat or HAProxy does better \
         (by that ratio where there is one). Memory: VmRSS of berth and of HAProxy, summed Pss of socat's processes \
         (it forks per connection), with the sessions open (after each carried one line); \
         growth is that minus before opening them; kept is after closing minus before \
         opening, and \"released\" means at most 1 MiB or a quarter of the growth."
    );
    Verdict { table: out, misses }
}

/// CPU time per request (for diagnosis): each forwarder's own, and dockerd's and the
/// client's on the direct runs.
pub(crate) fn cpu_table(samples: &Samples, targets: &[&'static str]) -> String {
    let mut cols: Vec<(String, &'static str, &'static str)> = targets
        .iter()
        .filter(|t| **t != "direct")
        .map(|t| ((*t).to_owned(), ".cpu", *t))
        .collect();
    if targets.contains(&"direct") {
        cols.push(("dockerd (direct)".into(), ".cpu.dockerd", "direct"));
        cols.push(("client (direct)".into(), ".cpu.client", "direct"));
    }
    let keys = [
        ("ping-ka", "`GET /_ping`, keep-alive"),
        ("json-ka", "`GET /containers/json`, keep-alive"),
        ("ping-fresh", "`GET /_ping`, fresh connection"),
        ("json-fresh", "`GET /containers/json`, fresh connection"),
        ("rps-1", "req/s, 1 connection"),
        ("rps-16", "req/s, 16 connections"),
        ("rps-64", "req/s, 64 connections"),
        ("rps-256", "req/s, 256 connections"),
        ("download", "download, per MiB"),
        ("load", "`POST /images/load`, per MiB"),
        ("archive", "`PUT /archive`, per MiB"),
        ("hijack", "exec hijack, per MiB"),
        ("hijack-attach", "attach hijack, per MiB"),
    ];
    let get = |k: &str, suffix: &str, t: &'static str| {
        samples
            .get(&(format!("{k}{suffix}"), t))
            .map_or(f64::NAN, |v| median(v))
    };
    let present: Vec<_> = keys
        .iter()
        .filter(|(k, _)| cols.iter().any(|(_, suf, t)| !get(k, suf, t).is_nan()))
        .collect();
    let mut out = String::new();
    if present.is_empty() {
        return out;
    }
    out.push_str("| CPU µs per request (streams: per MiB) |");
    for (label, _, _) in &cols {
        let _ = write!(out, " {label} |");
    }
    out.push_str("\n|---|");
    for _ in &cols {
        out.push_str("---:|");
    }
    out.push('\n');
    for (k, label) in present {
        let _ = write!(out, "| {label} |");
        for (_, suf, t) in &cols {
            let v = get(k, suf, t);
            let _ = write!(
                out,
                " {} |",
                if v.is_nan() {
                    "—".into()
                } else {
                    format!("{v:.1}")
                }
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nRun time of all threads of each process over the measured requests or bytes, from \
         /proc/<pid>/task/*/schedstat (socat: with its per-connection children, exited ones \
         from /proc/<pid>/stat). The machine has {} CPUs for all of them together.",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    out
}

/// Samples and the report's header as JSON, for `--samples` and `--from-samples`.
pub(crate) fn to_json(samples: &Samples, header: &str) -> String {
    let rows: Vec<serde_json::Value> = samples
        .iter()
        .map(|((metric, target), values)| {
            serde_json::json!({"metric": metric, "target": target, "values": values})
        })
        .collect();
    serde_json::json!({"header": header, "samples": rows}).to_string()
}

/// The inverse of [`to_json`].
pub(crate) fn from_json(text: &str) -> anyhow::Result<(Samples, String)> {
    use anyhow::Context as _;
    let v: serde_json::Value = serde_json::from_str(text)?;
    let mut samples = Samples::new();
    for row in v["samples"].as_array().context("no samples")? {
        let target = row["target"].as_str().context("no target")?;
        let target = crate::TARGETS
            .iter()
            .find(|t| **t == target)
            .with_context(|| format!("unknown target {target}"))?;
        let values = row["values"]
            .as_array()
            .context("no values")?
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect();
        let metric = row["metric"].as_str().context("no metric")?.to_owned();
        samples.insert((metric, target), values);
    }
    Ok((samples, v["header"].as_str().unwrap_or_default().to_owned()))
}

/// Per-round samples, for `--raw`.
pub(crate) fn raw(samples: &Samples) -> String {
    let mut out = String::new();
    for ((key, t), v) in samples {
        let vals: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
        let _ = writeln!(out, "{key:<16} {t:<8} {}", vals.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rows: &[(&str, &'static str, f64)]) -> Samples {
        let mut s = Samples::new();
        for (k, t, v) in rows {
            s.entry(((*k).to_owned(), *t)).or_default().push(*v);
        }
        s
    }

    #[test]
    fn verdicts() {
        let targets = ["direct", "berth", "socat", "haproxy"];
        let s = samples(&[
            ("ping-ka.p50", "direct", 100.0),
            ("ping-ka.p50", "berth", 110.0),
            ("ping-ka.p50", "socat", 120.0),
            ("ping-ka.p50", "haproxy", 130.0),
            ("rps-16", "direct", 1000.0),
            ("rps-16", "berth", 800.0),
            ("rps-16", "socat", 900.0),
            ("rps-16", "haproxy", 700.0),
        ]);
        let v = table(&s, &targets, 500);
        let ping = v
            .table
            .lines()
            .find(|l| l.contains("p50, keep-alive"))
            .unwrap();
        assert!(
            ping.contains("1.10×") && ping.ends_with("| pass |"),
            "{ping}"
        );
        assert!(
            !v.table.contains("p99"),
            "rows without samples are left out"
        );
        assert_eq!(v.misses.len(), 1);
        assert!(
            v.misses[0].contains("misses ≥ 0.85×, loses to socat"),
            "{:?}",
            v.misses
        );
        assert!(!v.misses[0].contains("haproxy"));
    }

    #[test]
    fn a_ratio_target_without_direct_is_not_judged() {
        let s = samples(&[("ping-ka.p50", "berth", 110.0), ("rps-16", "berth", 800.0)]);
        let v = table(&s, &["berth"], 500);
        for label in ["p50, keep-alive", "16 connections"] {
            let row = v.table.lines().find(|l| l.contains(label)).unwrap();
            assert!(row.ends_with("| not judged (no direct) |"), "{row}");
        }
        assert!(v.misses.is_empty(), "{:?}", v.misses);
    }

    #[test]
    fn ratios_are_taken_per_round() {
        let mut s = Samples::new();
        s.insert(("rps-16".into(), "direct"), vec![100.0, 300.0, 200.0]);
        s.insert(("rps-16".into(), "berth"), vec![110.0, 330.0, 400.0]);
        let v = table(&s, &["direct", "berth"], 500);
        let row = v
            .table
            .lines()
            .find(|l| l.contains("16 connections"))
            .unwrap();
        assert!(row.contains("| 1.10× (1.10–2.00) |"), "{row}");
    }

    #[test]
    fn samples_round_trip() {
        let mut s = Samples::new();
        s.insert(("rps-16".into(), "haproxy"), vec![1.5, 2.5]);
        let json = to_json(&s, "head");
        let (back, head) = from_json(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(head, "head");
    }

    #[test]
    fn idle_memory_verdicts() {
        let s = samples(&[
            ("idle.rss", "berth", 12.0),
            ("idle.before", "berth", 4.0),
            ("idle.retained", "berth", 1.5),
            ("idle.rss", "haproxy", 15.0),
        ]);
        let v = table(&s, &["direct", "berth", "haproxy"], 500);
        assert!(v.misses.is_empty(), "{:?}", v.misses);
        let s = samples(&[
            ("idle.rss", "berth", 17.0),
            ("idle.before", "berth", 5.0),
            ("idle.retained", "berth", 11.0),
        ]);
        let v = table(&s, &["berth"], 500);
        assert_eq!(v.misses.len(), 2, "{:?}", v.misses);
    }
}
