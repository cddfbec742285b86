//! The public status page in a real browser: Debian's headless Chromium loads `/status` from
//! an in-process gateway holding a day and a month of SLI history, at a phone's size and a
//! desktop's. The DOM it built must hold three charts with a point per bucket, and the
//! screenshots must show the charts' line colour drawn across the chart's width.
//!
//! `scripts/setup-chromium.sh` installs Chromium (`scripts/test` runs it). Without it (a
//! developer's machine) this test says so and checks nothing, except in CI, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::clock::ManualClock;
use switchyard_metering::directory::unix_ms;
use switchyard_metering::sli::minute_of;
use switchyard_metering::{UsageRecord, UsageStatus};
use switchyard_testkit::*;

const MIN: i64 = 60_000;
/// `switchyard_control::status::charts::LINE`, #1d4ed8.
const LINE_RGB: [u8; 3] = [0x1d, 0x4e, 0xd8];

fn chromium() -> Option<PathBuf> {
    for candidate in ["chromium", "chromium-browser", "/usr/bin/chromium"] {
        let found = std::process::Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some(candidate.into());
        }
    }
    // CI runs scripts/test, which installs it: there, its absence is a failure.
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium missing in CI (scripts/setup-chromium.sh installs it)"
    );
    eprintln!("chromium not installed: skipping (scripts/setup-chromium.sh installs it)");
    None
}

fn record(id: String, at_ms: i64, ok: bool, ttft: u64) -> UsageRecord {
    UsageRecord {
        request_id: id,
        started_at_ms: at_ms,
        tenant_id: "browser-tenant".into(),
        key_id: "k".into(),
        model: "sim-small".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        worker: "w".into(),
        provider: "p".into(),
        region: "local".into(),
        prompt_tokens: 10,
        completion_tokens: 64,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: ok.then_some(ttft),
        ttft_exempt: false,
        total_ms: ttft + 800,
        status: if ok {
            UsageStatus::Completed
        } else {
            UsageStatus::Failed
        },
        http_status: if ok { 200 } else { 500 },
        finish_reason: None,
        cost: 0,
        cogs: 0,
    }
}

/// Traffic in every 15 minutes of the last day (first tokens rising and falling between
/// 0.2 and 1.4 s, a 500 in some buckets) and every two hours of the last month.
fn history(now_minute: i64) -> Vec<UsageRecord> {
    let mut out = Vec::new();
    for b in 0..96i64 {
        let start = (now_minute - 1_440 + 1 + b * 15) * MIN;
        let wave = ((b as f64) / 96.0 * std::f64::consts::TAU * 2.0).sin();
        let ttft = (800.0 + 600.0 * wave) as u64;
        for i in 0..8 {
            out.push(record(format!("d{b}-{i}"), start + i * 1_000, true, ttft));
        }
        if b % 7 == 3 {
            out.push(record(format!("d{b}-e"), start + 9_000, false, 0));
        }
    }
    for h in 12..360i64 {
        let at = (now_minute - h * 120) * MIN;
        out.push(record(
            format!("m{h}"),
            at,
            h % 11 != 0,
            300 + (h as u64 % 5) * 150,
        ));
    }
    out
}

async fn run_chromium(bin: &Path, args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        // The test runs as root in a container: Chromium's sandbox cannot start there.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium took over 2 minutes")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Pixels of the line colour (allowing for antialiasing), and the horizontal span they cover.
fn line_pixels(png_path: &Path) -> (u32, u32, (u32, u32), usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let (mut count, mut min_x, mut max_x) = (0usize, u32::MAX, 0u32);
    for y in 0..info.height {
        for x in 0..info.width {
            let at = (y as usize * info.line_size) + x as usize * channels;
            let px = &buf[at..at + 3];
            let close = px
                .iter()
                .zip(LINE_RGB)
                .all(|(a, b)| (i16::from(*a) - i16::from(b)).abs() <= 24);
            if close {
                count += 1;
                min_x = min_x.min(x);
                max_x = max_x.max(x);
            }
        }
    }
    (info.width, info.height, (min_x, max_x), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_charts_with_data_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    // Half a minute into the current minute, held there: the page's buckets are counted back
    // from the minute it is rendered in, which must be the one the history was written for.
    let now_ms = minute_of(unix_ms()) * MIN + 30_000;
    let clock = Arc::new(ManualClock::new(now_ms));
    let gw = start_with_clock(config(vec![sim("a", |_| {})]), clock).await;
    let now_minute = minute_of(now_ms);
    gw.state
        .directory
        .store()
        .insert_usage(&history(now_minute))
        .await
        .unwrap();
    let url = format!("{}/status", gw.url());

    // The DOM Chromium built: three charts, a point in every bucket, lines through them.
    let dom = run_chromium(
        &bin,
        &[
            "--window-size=390,844".into(),
            "--dump-dom".into(),
            url.clone(),
        ],
    )
    .await;
    let dom = String::from_utf8(dom.stdout).unwrap();
    for chart in ["availability", "ttft", "errors"] {
        let needle = format!("data-chart=\"{chart}\" data-points=\"96\"");
        assert!(dom.contains(&needle), "{needle} not in the DOM:\n{dom}");
    }
    let lines: Vec<&str> = dom
        .split("class=\"line\" d=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{dom}");
    for d in &lines {
        assert_eq!(d.matches('L').count(), 95, "{d}");
    }
    assert!(!dom.contains("browser-tenant"));

    // Screenshots: a phone (the first chart is above the fold) and a desktop (all three).
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (name, w, h, min_pixels) in [
        ("status-phone.png", 390u32, 844u32, 300usize),
        ("status-desktop.png", 1280, 900, 900),
    ] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        run_chromium(
            &bin,
            &[
                format!("--window-size={w},{h}"),
                format!("--screenshot={}", path.display()),
                url.clone(),
            ],
        )
        .await;
        let (pw, ph, (x0, x1), count) = line_pixels(&path);
        eprintln!("{name}: {pw}x{ph}, {count} line pixels from x={x0} to x={x1}");
        assert_eq!((pw, ph), (w, h), "{name}");
        assert!(count >= min_pixels, "{name}: {count} line pixels");
        // A line across the chart, not a dot: it spans most of a chart's width, which on
        // the phone is the page's width less its margins.
        let chart_width = if w < 720 { w - 60 } else { (w - 100) / 3 };
        assert!(
            x1 - x0 >= chart_width * 8 / 10,
            "{name}: line spans {x0}..{x1}"
        );
    }
    gw.shutdown().await;
}
