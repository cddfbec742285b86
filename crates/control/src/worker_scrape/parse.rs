//! Picks the few gauges the gateway re-exports out of a runtime's Prometheus text output. Only
//! sample lines are read (name, optional `{labels}`, value); comments, timestamps and every
//! other family are skipped. A runtime serving several engines or models reports one series
//! per engine: counts are summed, the cache share is the fullest engine's.

/// Source names per gauge, in order of preference (vLLM renamed its KV gauge in V1).
const KV_CACHE: &[&str] = &[
    "vllm:gpu_cache_usage_perc",
    "vllm:kv_cache_usage_perc",
    "sglang:token_usage",
];
const RUNNING: &[&str] = &[
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "tgi_batch_current_size",
];
const WAITING: &[&str] = &[
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "tgi_queue_size",
];

use switchyard_gateway::metrics::worker_figures::RuntimeGauges;

pub fn parse(text: &str) -> RuntimeGauges {
    // One accumulator per source name, so two names for the same thing are never added up.
    let mut kv = [None::<f64>; 3];
    let mut running = [None::<f64>; 3];
    let mut waiting = [None::<f64>; 3];
    for line in text.lines() {
        let Some((name, value)) = sample(line) else {
            continue;
        };
        if let Some(i) = KV_CACHE.iter().position(|n| *n == name) {
            kv[i] = Some(kv[i].map_or(value, |v: f64| v.max(value)));
        } else if let Some(i) = RUNNING.iter().position(|n| *n == name) {
            running[i] = Some(running[i].unwrap_or(0.0) + value);
        } else if let Some(i) = WAITING.iter().position(|n| *n == name) {
            waiting[i] = Some(waiting[i].unwrap_or(0.0) + value);
        }
    }
    let first = |found: [Option<f64>; 3]| found.into_iter().flatten().next();
    RuntimeGauges {
        kv_cache_usage: first(kv),
        running: first(running),
        waiting: first(waiting),
    }
}

/// `name{labels} value [timestamp]` → (name, value); `None` for anything else.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let rest = &line[name_end..];
    let rest = if rest.starts_with('{') {
        &rest[labels_end(rest)?..]
    } else {
        rest
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((name, value))
}

/// The byte just past the `}` closing a label set that starts at `s[0]`, skipping quoted
/// values (which may hold `}` and escaped quotes).
fn labels_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vllm_output() {
        let text = r#"
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.5
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
vllm:num_requests_waiting{model_name="odd } \" name"} 4 1700000000000
vllm:num_requests_swapped{model_name="m"} 9
"#;
        assert_eq!(
            parse(text),
            RuntimeGauges {
                kv_cache_usage: Some(0.5),
                running: Some(5.0),
                waiting: Some(4.0),
            }
        );
    }

    #[test]
    fn reads_tgi_and_sglang_output() {
        let tgi = "tgi_queue_size 7\ntgi_batch_current_size 12\n";
        assert_eq!(
            parse(tgi),
            RuntimeGauges {
                kv_cache_usage: None,
                running: Some(12.0),
                waiting: Some(7.0),
            }
        );
        let sglang = "sglang:token_usage{model_name=\"m\"} 0.75\nsglang:num_queue_reqs{model_name=\"m\"} 1\n";
        assert_eq!(
            parse(sglang),
            RuntimeGauges {
                kv_cache_usage: Some(0.75),
                running: None,
                waiting: Some(1.0),
            }
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let text =
            "vllm:num_requests_running{unterminated 3\nvllm:num_requests_waiting NaN\n\u{0}\n{}";
        assert_eq!(parse(text), RuntimeGauges::default());
    }
}
