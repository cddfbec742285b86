//! What the ledger observed: the token mix and request rate of a set of usage rows.
//!
//! [`LedgerRow`] is the planner's view of one usage record (the CLI fills it from
//! `switchyard_metering::UsageRecord`), so this crate needs no database.

use serde::Serialize;

/// How a request ended (the ledger's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Completed,
    Failed,
    FailedMidStream,
    ClientDisconnected,
    /// The gateway process stopped under it: neither the provider's success nor its failure.
    Interrupted,
}

/// One request as the ledger recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub started_at_ms: i64,
    pub model: String,
    pub worker: String,
    pub provider: String,
    pub region: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ttft_ms: Option<u64>,
    pub total_ms: u64,
    pub status: RowStatus,
    pub http_status: u16,
    /// Cost of goods, integer nano-dollars (the worker's $/h apportioned to this request).
    pub cogs_nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observed {
    /// Rows considered.
    pub requests: u64,
    /// Rows that completed; the token mix is theirs.
    pub completed: u64,
    pub avg_prompt_tokens: f64,
    pub avg_completion_tokens: f64,
    /// From the first request's start to the last one's end, seconds.
    pub span_seconds: f64,
    /// requests / span (0 when the span is empty).
    pub qps: f64,
    /// Completed requests' mean time to last token, seconds.
    pub avg_request_seconds: f64,
}

/// The token mix of completed rows and the request rate of all rows; `None` with no
/// completed row (nothing to average).
pub fn observe<'a>(rows: impl IntoIterator<Item = &'a LedgerRow>) -> Option<Observed> {
    let (mut n, mut done, mut prompt, mut completion, mut total_ms) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for r in rows {
        n += 1;
        first = first.min(r.started_at_ms);
        last = last.max(r.started_at_ms.saturating_add(r.total_ms as i64));
        if r.status == RowStatus::Completed {
            done += 1;
            prompt += r.prompt_tokens;
            completion += r.completion_tokens;
            total_ms += r.total_ms;
        }
    }
    if done == 0 {
        return None;
    }
    let span = (last - first).max(0) as f64 / 1000.0;
    Some(Observed {
        requests: n,
        completed: done,
        avg_prompt_tokens: prompt as f64 / done as f64,
        avg_completion_tokens: completion as f64 / done as f64,
        span_seconds: span,
        qps: if span > 0.0 { n as f64 / span } else { 0.0 },
        avg_request_seconds: total_ms as f64 / done as f64 / 1000.0,
    })
}

#[cfg(test)]
pub(crate) fn row(
    started_at_ms: i64,
    prompt: u64,
    completion: u64,
    status: RowStatus,
) -> LedgerRow {
    LedgerRow {
        started_at_ms,
        model: "m".into(),
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        ttft_ms: Some(100),
        total_ms: 1000,
        status,
        http_status: if status == RowStatus::Completed {
            200
        } else {
            502
        },
        cogs_nanos: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_of_completed_rows_and_rate_of_all() {
        // Completed: (100, 20), (300, 60) → averages 200 prompt, 40 completion.
        // Span: first start 0 ms, last end 9,000 + 1,000 = 10,000 ms → 3 rows / 10 s = 0.3 QPS.
        let rows = [
            row(0, 100, 20, RowStatus::Completed),
            row(4_000, 300, 60, RowStatus::Completed),
            row(9_000, 999, 5, RowStatus::Failed),
        ];
        let o = observe(&rows).unwrap();
        assert_eq!((o.requests, o.completed), (3, 2));
        assert_eq!(o.avg_prompt_tokens, 200.0);
        assert_eq!(o.avg_completion_tokens, 40.0);
        assert_eq!(o.span_seconds, 10.0);
        assert!((o.qps - 0.3).abs() < 1e-12);
        assert_eq!(o.avg_request_seconds, 1.0);
        assert!(observe(&[row(0, 1, 1, RowStatus::Failed)]).is_none());
    }
}
