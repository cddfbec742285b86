//! The side-by-side report: request records, fault events and gateway logs of each phase in,
//! a table on stdout and one JSON document out.
//!
//! One piece: the report's parsing, per-window tallies and table are read together when the
//! benchmark's output format changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Map, Value};
use switchyard_loadgen::RequestRecord as Record;

#[derive(Args)]
pub struct ReportArgs {
    /// A phase as NAME=DIR; DIR holds requests.jsonl (`switchyard bench --records`, started at
    /// the phase's t0), events.jsonl, gateway.log (JSON lines) and phase.json
    /// (`{"t0_ms": ...}`). In the order they are to be shown.
    #[arg(long = "phase", required = true)]
    phases: Vec<String>,
    /// JSON object describing the setup, copied into the output under `setup`.
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Where the JSON goes.
    #[arg(long)]
    out: PathBuf,
    /// The phase the targets apply to.
    #[arg(long, default_value = "adaptive")]
    target_phase: String,
    #[arg(long, default_value_t = 99.9)]
    target_success_pct: f64,
    #[arg(long, default_value_t = 1500.0)]
    target_ttft_p95_ms: f64,
    /// The load generator must have sent 99% of requests within this many ms of their
    /// scheduled start, or the run is invalid (the generator, not the gateway, was measured).
    #[arg(long, default_value_t = 250.0)]
    max_late_p99_ms: f64,
}

fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let f = |p: f64| pct(&v, p).map(round1);
    json!({
        "count": v.len(),
        "p50": f(50.0), "p95": f(95.0), "p99": f(99.0),
        "max": v.last().copied().map(round1),
    })
}

fn rate(ok: usize, n: usize) -> Option<f64> {
    (n > 0).then(|| (ok as f64 / n as f64 * 1e5).round() / 1e3)
}

/// Days from 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix ms of an RFC 3339 UTC timestamp like `2025-01-02T03:04:05.678901Z`.
fn parse_ts_ms(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    let days = days_from_civil(y, mo, da);
    Some(((days * 86_400 + h * 3600 + mi * 60) as f64 + sec) * 1000.0)
}

/// Counts from the gateway's JSON log: settled requests with their attempts and hedges,
/// failed attempts, hedges started, retry budget refusals, worker state changes.
fn gateway_stats(lines: &[String], t0_ms: f64) -> Value {
    let mut settled = 0u64;
    let mut retried = 0u64;
    let mut extra_attempts = 0u64;
    let mut hedged = 0u64;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut attempt_failed = 0u64;
    let mut hedge_started = 0u64;
    let mut budget_exhausted = 0u64;
    let mut ejections = 0u64;
    let mut changes = Vec::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        let t_s = v["timestamp"]
            .as_str()
            .and_then(parse_ts_ms)
            .map(|t| round1((t - t0_ms) / 1000.0));
        match f["message"].as_str().unwrap_or("") {
            "request settled" => {
                settled += 1;
                let attempts = f["attempts"].as_u64().unwrap_or(1);
                if attempts > 1 {
                    retried += 1;
                    extra_attempts += attempts - 1;
                }
                if f["hedged"].as_bool() == Some(true) {
                    hedged += 1;
                }
                let status = f["status"].as_str().unwrap_or("?").to_owned();
                *statuses.entry(status).or_default() += 1;
            }
            "attempt failed" => attempt_failed += 1,
            "no first token yet; hedging" => hedge_started += 1,
            "retry budget exhausted; not retrying" => budget_exhausted += 1,
            m @ ("worker state changed" | "worker in rotation") => {
                let to = f["to"].as_str().unwrap_or(if m == "worker in rotation" {
                    "Ready"
                } else {
                    "?"
                });
                if to.eq_ignore_ascii_case("ejected") {
                    ejections += 1;
                }
                changes.push(json!({
                    "t_s": t_s,
                    "worker": f["worker"],
                    "from": f["from"],
                    "to": to,
                    "reason": f["reason"],
                }));
            }
            _ => {}
        }
    }
    json!({
        "settled": settled,
        "retried_requests": retried,
        "extra_attempts": extra_attempts,
        "hedged_requests": hedged,
        "settled_status": statuses,
        "attempt_failed_lines": attempt_failed,
        "hedges_started": hedge_started,
        "retry_budget_exhausted": budget_exhausted,
        "ejections": ejections,
        "worker_state_changes": changes,
    })
}

/// Fault windows [start, end) in ms from the phase's time zero, from start/end event pairs.
fn windows(events: &[Value]) -> Vec<(String, f64, f64)> {
    let mut open: BTreeMap<String, f64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let (Some(name), Some(t)) = (e["fault"].as_str(), e["t_ms"].as_f64()) else {
            continue;
        };
        match e["what"].as_str() {
            Some("start") => {
                open.insert(name.to_owned(), t);
            }
            Some("end") => {
                if let Some(s) = open.remove(name) {
                    out.push((name.to_owned(), s, t));
                }
            }
            _ => {}
        }
    }
    for (name, s) in open {
        out.push((name, s, f64::INFINITY));
    }
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

fn window_stats(name: &str, start: f64, end: f64, recs: &[&Record]) -> Value {
    let ok = recs.iter().filter(|r| r.ok).count();
    let ttft: Vec<f64> = recs.iter().filter_map(|r| r.ttft_ms).collect();
    json!({
        "window": name,
        "start_s": round1(start / 1000.0),
        "end_s": if end.is_finite() { Some(round1(end / 1000.0)) } else { None },
        "sent": recs.len(),
        "succeeded": ok,
        "failed": recs.len() - ok,
        "success_rate_pct": rate(ok, recs.len()),
        "ttft_ms": summary(ttft),
    })
}

fn phase_stats(dir: &Path) -> Result<Value, String> {
    let records: Vec<Record> = read_lines(&dir.join("requests.jsonl"))?
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad record {l}: {e}")))
        .collect::<Result<_, _>>()?;
    let events: Vec<Value> = read_lines(&dir.join("events.jsonl"))?
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let phase: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("phase.json"))
            .map_err(|e| format!("cannot read phase.json in {}: {e}", dir.display()))?,
    )
    .map_err(|e| format!("bad phase.json: {e}"))?;
    let t0_ms = phase["t0_ms"].as_f64().unwrap_or(0.0);
    let gw_lines = read_lines(&dir.join("gateway.log")).unwrap_or_default();

    let sent = records.len();
    let ok = records.iter().filter(|r| r.ok).count();
    let lost = records.iter().filter(|r| r.lost).count();
    let failed_mid = records
        .iter()
        .filter(|r| !r.ok && r.ttft_ms.is_some())
        .count();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        if let Some(e) = &r.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    let short = records
        .iter()
        .filter(|r| r.ok && r.text_events < u64::from(r.max_tokens))
        .count();
    let ttft: Vec<f64> = records.iter().filter_map(|r| r.ttft_ms).collect();
    let ttft_ok: Vec<f64> = records
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.ttft_ms)
        .collect();
    let ttlt: Vec<f64> = records.iter().filter_map(|r| r.ttlt_ms).collect();
    // How late the load generator sent each request, after its scheduled start.
    let late: Vec<f64> = records
        .iter()
        .map(|r| (r.sent_ms - r.scheduled_ms).max(0.0))
        .collect();

    let wins = windows(&events);
    // Stretches with no fault active, each its own window, between and around the faults.
    let mut all: Vec<(String, f64, f64)> = Vec::new();
    let mut cursor = 0.0f64;
    for (_, s, e) in &wins {
        if *s > cursor {
            all.push(("no fault active".into(), cursor, *s));
        }
        cursor = cursor.max(*e);
    }
    if cursor.is_finite() {
        all.push(("no fault active".into(), cursor, f64::INFINITY));
    }
    all.extend(wins.iter().cloned());
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    let per_window: Vec<Value> = all
        .iter()
        .map(|(name, s, e)| {
            let recs: Vec<&Record> = records
                .iter()
                .filter(|r| r.scheduled_ms >= *s && r.scheduled_ms < *e)
                .collect();
            window_stats(name, *s, *e, &recs)
        })
        .collect();

    Ok(json!({
        "policy": phase["policy"],
        "t0_ms": phase["t0_ms"],
        "sent": sent,
        "succeeded": ok,
        "failed": sent - ok,
        "lost": lost,
        "success_rate_pct": rate(ok, sent),
        "failed_before_first_token": sent - ok - failed_mid,
        "failed_after_first_token": failed_mid,
        "errors": errors,
        "short_streams": short,
        "ttft_ms": summary(ttft),
        "ttft_ms_succeeded_only": summary(ttft_ok),
        "ttlt_ms": summary(ttlt),
        "loadgen_late_ms": summary(late),
        "gateway": gateway_stats(&gw_lines, t0_ms),
        "windows": per_window,
        "fault_events": events,
    }))
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            Some(f) => format!("{f:.1}"),
            None => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn triple(v: &Value) -> String {
    format!(
        "{} / {} / {}",
        cell(&v["p50"]),
        cell(&v["p95"]),
        cell(&v["p99"])
    )
}

/// A table row's label and how it reads its cell from a phase.
type Cell = Box<dyn Fn(&Value) -> String>;

fn render(names: &[String], phases: &Map<String, Value>, setup: &Value, verdict: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let w0 = 40;
    let w = 30;
    line(String::new());
    line(format!(
        "Switchyard chaos benchmark  {}  commit {}",
        cell(&setup["timestamp"]),
        cell(&setup["commit"])
    ));
    line("ALL WORKERS ARE SIMULATED (switchyard sim processes on 127.0.0.1): figures measure the gateway's routing and failover, not any real GPU or model.".into());
    if let Some(s) = setup["summary"].as_str() {
        line(s.to_owned());
    }
    line(String::new());
    let mut header = format!("{:<w0$}", "");
    for n in names {
        header.push_str(&format!("{n:>w$}"));
    }
    line(header);
    let rows: Vec<(&str, Cell)> = vec![
        ("requests sent", Box::new(|p| cell(&p["sent"]))),
        ("succeeded", Box::new(|p| cell(&p["succeeded"]))),
        ("failed", Box::new(|p| cell(&p["failed"]))),
        (
            "  before the first token",
            Box::new(|p| cell(&p["failed_before_first_token"])),
        ),
        (
            "  after it (stream broken mid-way)",
            Box::new(|p| cell(&p["failed_after_first_token"])),
        ),
        (
            "  lost (no HTTP response at all)",
            Box::new(|p| cell(&p["lost"])),
        ),
        (
            "success rate %",
            Box::new(|p| {
                p["success_rate_pct"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.2}"))
            }),
        ),
        (
            "TTFT ms p50 / p95 / p99",
            Box::new(|p| triple(&p["ttft_ms"])),
        ),
        (
            "TTLT ms p50 / p95 / p99",
            Box::new(|p| triple(&p["ttlt_ms"])),
        ),
        (
            "gateway: requests retried",
            Box::new(|p| cell(&p["gateway"]["retried_requests"])),
        ),
        (
            "gateway: requests hedged",
            Box::new(|p| cell(&p["gateway"]["hedged_requests"])),
        ),
        (
            "gateway: failed attempts logged",
            Box::new(|p| cell(&p["gateway"]["attempt_failed_lines"])),
        ),
        (
            "gateway: retry budget refusals",
            Box::new(|p| cell(&p["gateway"]["retry_budget_exhausted"])),
        ),
        (
            "gateway: ejections",
            Box::new(|p| cell(&p["gateway"]["ejections"])),
        ),
        (
            "gateway: requests settled (logged)",
            Box::new(|p| cell(&p["gateway"]["settled"])),
        ),
        (
            "load generator late ms p99 / max",
            Box::new(|p| {
                format!(
                    "{} / {}",
                    cell(&p["loadgen_late_ms"]["p99"]),
                    cell(&p["loadgen_late_ms"]["max"])
                )
            }),
        ),
    ];
    for (label, f) in &rows {
        let mut s = format!("{label:<w0$}");
        for n in names {
            s.push_str(&format!("{:>w$}", f(&phases[n])));
        }
        line(s);
    }
    line(String::new());
    line("errors by kind:".into());
    for n in names {
        let errs = phases[n]["errors"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", cell(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        line(format!(
            "  {n}: {}",
            if errs.is_empty() { "none".into() } else { errs }
        ));
    }
    line(String::new());
    line("by window (requests by scheduled start; success % / TTFT p95 ms (requests)):".into());
    let mut header = format!("{:<w0$}{:>12}", "window", "seconds");
    for n in names {
        header.push_str(&format!("{:>w$}", format!("{n} ok% / p95")));
    }
    line(header);
    let first = &phases[&names[0]]["windows"];
    for (i, wnd) in first.as_array().into_iter().flatten().enumerate() {
        let secs = match (wnd["start_s"].as_f64(), wnd["end_s"].as_f64()) {
            (Some(s), Some(e)) => format!("{s:.0}-{e:.0}"),
            (Some(s), None) => format!("{s:.0}-"),
            _ => String::new(),
        };
        let mut s = format!("{:<w0$}{secs:>12}", cell(&wnd["window"]));
        for n in names {
            let x = &phases[n]["windows"][i];
            let okp = x["success_rate_pct"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.1}"));
            s.push_str(&format!(
                "{:>w$}",
                format!(
                    "{okp} / {} (n={})",
                    cell(&x["ttft_ms"]["p95"]),
                    cell(&x["sent"])
                )
            ));
        }
        line(s);
    }
    line(String::new());
    if let Some(v) = verdict.as_object() {
        line(format!(
            "target ({}): success >= {}% and p95 TTFT <= {} ms: {}  (success {}%, p95 TTFT {} ms)",
            cell(&v["phase"]),
            cell(&v["success_target_pct"]),
            cell(&v["ttft_p95_target_ms"]),
            if v["met"].as_bool() == Some(true) {
                "MET"
            } else {
                "NOT met"
            },
            v["success_rate_pct"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.2}")),
            cell(&v["ttft_p95_ms"]),
        ));
    }
    out
}

pub fn run(args: &ReportArgs) -> Result<ExitCode, String> {
    let mut names = Vec::new();
    let mut phases = Map::new();
    for p in &args.phases {
        let (name, dir) = p
            .split_once('=')
            .ok_or_else(|| format!("--phase wants NAME=DIR, got {p}"))?;
        phases.insert(name.to_owned(), phase_stats(Path::new(dir))?);
        names.push(name.to_owned());
    }
    let setup: Value = match &args.meta {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )
        .map_err(|e| format!("bad meta {}: {e}", path.display()))?,
        None => json!({}),
    };

    // Validity: a measurement of the load generator or of a fleet that never came up is
    // not a measurement of the gateway.
    let mut invalid = Vec::new();
    for n in &names {
        let p = &phases[n];
        if p["sent"].as_u64().unwrap_or(0) == 0 {
            invalid.push(format!("{n}: no requests were sent"));
        }
        if p["succeeded"].as_u64().unwrap_or(0) == 0 {
            invalid.push(format!("{n}: no request succeeded"));
        }
        if let Some(late) = p["loadgen_late_ms"]["p99"].as_f64() {
            if late > args.max_late_p99_ms {
                invalid.push(format!(
                    "{n}: the load generator fell behind its schedule (p99 {late} ms late > {} ms)",
                    args.max_late_p99_ms
                ));
            }
        }
    }
    let verdict = phases.get(&args.target_phase).map(|p| {
        let sr = p["success_rate_pct"].as_f64();
        let p95 = p["ttft_ms"]["p95"].as_f64();
        let met = sr.is_some_and(|s| s >= args.target_success_pct)
            && p95.is_some_and(|t| t <= args.target_ttft_p95_ms);
        json!({
            "phase": args.target_phase,
            "success_target_pct": args.target_success_pct,
            "ttft_p95_target_ms": args.target_ttft_p95_ms,
            "success_rate_pct": sr,
            "ttft_p95_ms": p95,
            "met": met,
        })
    });
    let verdict = verdict.unwrap_or(Value::Null);
    let doc = json!({
        "setup": setup,
        "phases": phases,
        "target": verdict,
        "valid": invalid.is_empty(),
        "invalid_reasons": invalid,
        "notes": {
            "simulated": "All workers are switchyard sim processes: simulations of inference servers, not real models or GPUs.",
            "ttft": "TTFT: from a request's scheduled start to the first SSE chunk with non-empty delta.content, over every request that got one (also those that later broke).",
            "ttlt": "TTLT: from the scheduled start to the end of a successful stream (after [DONE]).",
            "failed": "Failed: HTTP error status, a stream that broke, carried an error event or ended without [DONE], or no end within the client timeout.",
            "lost": "Lost: no HTTP response at all (timed out or the connection dropped before a status line).",
            "windows": "Requests are assigned to a window by their scheduled start (a stream broken by a fault that began after it started counts in the window it started in); fault windows may overlap.",
        },
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, format!("{text}\n"))
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    print!("{}", render(&names, &phases, &setup, &verdict));
    if invalid.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for r in &invalid {
            eprintln!("chaos report: INVALID: {r}");
        }
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_percentiles() {
        assert_eq!(parse_ts_ms("1970-01-02T00:00:01.5Z"), Some(86_401_500.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), Some(50.0));
        assert_eq!(pct(&v, 95.0), Some(95.0));
        assert_eq!(pct(&v, 99.0), Some(99.0));
        assert_eq!(pct(&[], 50.0), None);
    }

    #[test]
    fn phase_from_bench_records() {
        let dir = std::env::temp_dir().join(format!("chaos-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // As `switchyard bench --records` writes them: a success, a stream cut after its
        // first token (in a fault window), a lost request; the generator 2 ms late once.
        let lines = [
            r#"{"id":0,"scheduled_ms":0.0,"sent_ms":0.1,"max_tokens":8,"ok":true,"error":null,"lost":false,"status":200,"ttft_ms":50.0,"ttlt_ms":200.0,"prompt_tokens":22,"completion_tokens":8,"text_events":8}"#,
            r#"{"id":1,"scheduled_ms":1500.0,"sent_ms":1502.0,"max_tokens":8,"ok":false,"error":"stream_cut","lost":false,"status":200,"ttft_ms":60.0,"ttlt_ms":null,"prompt_tokens":null,"completion_tokens":null,"text_events":3}"#,
            r#"{"id":2,"scheduled_ms":2500.0,"sent_ms":2500.0,"max_tokens":8,"ok":false,"error":"timeout","lost":true,"status":null,"ttft_ms":null,"ttlt_ms":null,"prompt_tokens":null,"completion_tokens":null,"text_events":0}"#,
        ];
        std::fs::write(dir.join("requests.jsonl"), lines.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.join("events.jsonl"),
            "{\"t_ms\":1000,\"fault\":\"cut_streams\",\"what\":\"start\"}\n{\"t_ms\":2000,\"fault\":\"cut_streams\",\"what\":\"end\"}\n",
        )
        .unwrap();
        std::fs::write(dir.join("phase.json"), r#"{"policy":"adaptive","t0_ms":0}"#).unwrap();
        let p = phase_stats(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(p["sent"], 3);
        assert_eq!(p["succeeded"], 1);
        assert_eq!(p["lost"], 1);
        assert_eq!(p["failed_after_first_token"], 1);
        assert_eq!(p["failed_before_first_token"], 1);
        assert_eq!(p["errors"], json!({"stream_cut": 1, "timeout": 1}));
        assert_eq!(p["short_streams"], 0);
        assert_eq!(p["ttft_ms"]["count"], 2);
        assert_eq!(p["loadgen_late_ms"]["max"], 2.0);
        let w: Vec<(String, u64)> = p["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["window"].as_str().unwrap().to_owned(),
                    w["sent"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            w,
            [
                ("no fault active".to_owned(), 1),
                ("cut_streams".to_owned(), 1),
                ("no fault active".to_owned(), 1)
            ]
        );
    }
}
