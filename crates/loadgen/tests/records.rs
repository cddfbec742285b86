//! `BenchConfig::records`: one JSON line per request with the right fields, also for requests
//! that failed in each of the ways a server can fail; and the seeded Poisson schedule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chunk, config, end, serve, sleep_ms, sse_head, text_event, whole, Step};
use serde_json::Value;
use switchyard_loadgen::{Arrivals, BenchConfig, Load, RequestRecord, Schedule};

const USAGE: &str =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// Runs `cfg` with records into a temporary file; the records' raw lines and parsed, by id.
async fn run_recorded(cfg: BenchConfig) -> (Vec<Value>, Vec<RequestRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    let cfg = BenchConfig {
        records: Some(path.clone()),
        ..cfg
    };
    let report = switchyard_loadgen::run(&cfg, None).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, report.requests.sent, "{text}");
    let mut raw: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    raw.sort_by_key(|v| v["id"].as_u64().unwrap());
    let recs: Vec<RequestRecord> = raw
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    (raw, recs)
}

#[tokio::test]
async fn a_record_per_request_with_its_error_kind() {
    let text = text_event("x");
    let scripts: Vec<Vec<Step>> = vec![
        // 0: a success, with usage.
        vec![
            sse_head(),
            chunk(text.as_bytes()),
            chunk(text.as_bytes()),
            chunk(USAGE.as_bytes()),
            chunk(DONE.as_bytes()),
            end(),
        ],
        // 1: an HTTP error.
        vec![whole(
            "503 Service Unavailable",
            "application/json",
            r#"{"error":{"message":"busy"}}"#,
        )],
        // 2: cut off after the first token.
        vec![
            sse_head(),
            chunk(text.as_bytes()),
            Step::Raw(b"40\r\ndata: {\"cho".to_vec()),
        ],
        // 3: ends cleanly without [DONE].
        vec![sse_head(), chunk(text.as_bytes()), end()],
        // 4: accepts and never answers: lost, after the timeout.
        vec![sleep_ms(3_000)],
        // 5: headers, then nothing: a timeout, but not lost.
        vec![sse_head(), sleep_ms(3_000)],
    ];
    let n = scripts.len();
    let scripts = std::sync::Mutex::new(scripts.into_iter().map(Some).collect::<Vec<_>>());
    let script: common::Script = Arc::new(move |i| {
        scripts
            .lock()
            .unwrap()
            .get_mut(i)
            .and_then(Option::take)
            .unwrap_or_default()
    });
    let url = serve(script, false).await;
    let cfg = BenchConfig {
        timeout: Duration::from_millis(600),
        ..config(&url, n as u64)
    };
    let (raw, recs) = run_recorded(cfg).await;

    // Every field, on every line, whatever happened.
    let fields = [
        "id",
        "scheduled_ms",
        "sent_ms",
        "max_tokens",
        "ok",
        "error",
        "lost",
        "status",
        "ttft_ms",
        "ttlt_ms",
        "prompt_tokens",
        "completion_tokens",
        "text_events",
    ];
    for v in &raw {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, fields, "{v}");
    }
    let ids: Vec<u64> = recs.iter().map(|r| r.id).collect();
    assert_eq!(ids, (0..n as u64).collect::<Vec<_>>());
    let summary: Vec<(Option<&str>, bool, Option<u16>, bool)> = recs
        .iter()
        .map(|r| (r.error.as_deref(), r.lost, r.status, r.ttft_ms.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            (None, false, Some(200), true),
            (Some("http_503"), false, Some(503), false),
            (Some("stream_cut"), false, Some(200), true),
            (Some("stream_incomplete"), false, Some(200), true),
            (Some("timeout"), true, None, false),
            (Some("timeout"), false, Some(200), false),
        ]
    );
    let ok = &recs[0];
    assert!(ok.ok && recs[1..].iter().all(|r| !r.ok));
    assert_eq!(
        (ok.prompt_tokens, ok.completion_tokens, ok.text_events),
        (Some(7), Some(2), 2)
    );
    assert!(ok.ttft_ms.unwrap() <= ok.ttlt_ms.unwrap(), "{ok:?}");
    // TTLT only for successes; a cut stream keeps the TTFT it had.
    assert!(recs[1..].iter().all(|r| r.ttlt_ms.is_none()));
    assert_eq!(recs[2].text_events, 1);
    for r in &recs {
        assert_eq!(r.max_tokens, 8);
        assert!(r.sent_ms >= r.scheduled_ms, "{r:?}");
    }
    // Closed loop, one at a time: each starts after the one before ended.
    for w in recs.windows(2) {
        assert!(w[1].scheduled_ms >= w[0].scheduled_ms, "{w:?}");
    }
    // The timeouts count from the request's start: about 600 ms later.
    assert!(
        recs[5].scheduled_ms - recs[4].scheduled_ms >= 590.0,
        "{recs:?}"
    );
}

#[tokio::test]
async fn open_loop_records_follow_the_seeded_schedule() {
    let script: common::Script = Arc::new(|_| {
        vec![
            sse_head(),
            chunk(text_event("x").as_bytes()),
            chunk(DONE.as_bytes()),
            end(),
        ]
    });
    let url = serve(script, false).await;
    let cfg = BenchConfig {
        load: Load::Open { rate: 200.0 },
        arrivals: Arrivals::Poisson,
        seed: 42,
        max_tokens: 20,
        max_tokens_min: Some(10),
        ..config(&url, 40)
    };
    let (_, recs) = run_recorded(cfg.clone()).await;
    let schedule: Vec<Duration> = Schedule::new(Arrivals::Poisson, 200.0, 42)
        .take(40)
        .collect();
    assert_eq!(recs.len(), 40);
    for (r, due) in recs.iter().zip(&schedule) {
        assert!(
            (r.scheduled_ms - due.as_secs_f64() * 1e3).abs() < 0.001,
            "{r:?} {due:?}"
        );
        assert_eq!(r.max_tokens, cfg.max_tokens_of(r.id));
        assert!((10..=20).contains(&r.max_tokens));
        assert!(r.ok, "{r:?}");
    }
    assert!(recs.iter().any(|r| r.max_tokens != recs[0].max_tokens));
}

#[test]
fn poisson_schedules_are_reproducible_and_have_the_rate_asked_for() {
    let take = |seed: u64, n: usize| -> Vec<Duration> {
        Schedule::new(Arrivals::Poisson, 25.0, seed)
            .take(n)
            .collect()
    };
    let n = 50_000;
    let a = take(7, n);
    assert_eq!(a, take(7, n), "the same seed, the same schedule");
    assert_ne!(a[1..100], take(8, 100)[1..100], "another seed, another");
    assert_eq!(a[0], Duration::ZERO);
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    // Mean rate: n - 1 gaps over the last offset. Deterministic for this seed; for any seed
    // the relative error's standard deviation is 1/sqrt(n) = 0.45%.
    let last = a[n - 1].as_secs_f64();
    let rate = (n - 1) as f64 / last;
    assert!((rate - 25.0).abs() / 25.0 < 0.02, "rate {rate}");
    // Exponential gaps: the standard deviation equals the mean (evenly spaced would be 0).
    let gaps: Vec<f64> = a.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let cv = var.sqrt() / mean;
    assert!((cv - 1.0).abs() < 0.03, "coefficient of variation {cv}");
    // Arrivals per one-second window are Poisson(25): variance about the mean.
    let mut per_s = vec![0u32; last as usize];
    for t in &a {
        if let Some(c) = per_s.get_mut(t.as_secs() as usize) {
            *c += 1;
        }
    }
    let m = per_s.iter().map(|&c| f64::from(c)).sum::<f64>() / per_s.len() as f64;
    let v = per_s
        .iter()
        .map(|&c| (f64::from(c) - m).powi(2))
        .sum::<f64>()
        / per_s.len() as f64;
    assert!((v / m - 1.0).abs() < 0.1, "dispersion {}", v / m);

    // Uniform arrivals ignore the seed and are exactly 1/rate apart.
    let u: Vec<Duration> = Schedule::new(Arrivals::Uniform, 25.0, 7).take(5).collect();
    assert_eq!(u, [0, 40, 80, 120, 160].map(Duration::from_millis).to_vec());
}
