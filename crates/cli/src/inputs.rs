//! Measured inputs for `switchyard plan` and `switchyard providers`: a `switchyard bench` JSON
//! result, and the usage ledger (the gateway's SQLite file, or a JSON export from
//! `switchyard usage records --format json`).

use std::path::Path;

use serde_json::Value;
use switchyard_loadgen::{BenchReport, SCHEMA};
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{LedgerStore, UsageRecord, UsageStatus};
use switchyard_planner::mix::{LedgerRow, RowStatus};

use crate::error::CliError;

/// A `switchyard bench --json` result.
pub fn read_bench(path: &Path) -> Result<BenchReport, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let report: BenchReport = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a `switchyard bench --json` result: {e}",
            path.display()
        )
    })?;
    if report.schema != SCHEMA {
        return Err(format!(
            "{}: schema '{}' is not '{SCHEMA}'",
            path.display(),
            report.schema
        )
        .into());
    }
    if report.requests.ok == 0 || report.throughput.total_tokens_per_s <= 0.0 {
        return Err(format!(
            "{}: the benchmark has no successful request to measure throughput by",
            path.display()
        )
        .into());
    }
    Ok(report)
}

fn status(s: UsageStatus) -> RowStatus {
    match s {
        UsageStatus::Completed => RowStatus::Completed,
        UsageStatus::Failed => RowStatus::Failed,
        UsageStatus::FailedMidStream => RowStatus::FailedMidStream,
        UsageStatus::ClientDisconnected => RowStatus::ClientDisconnected,
        UsageStatus::Interrupted => RowStatus::Interrupted,
    }
}

fn from_record(r: UsageRecord) -> LedgerRow {
    LedgerRow {
        started_at_ms: r.started_at_ms,
        model: r.model,
        worker: r.worker,
        provider: r.provider,
        region: r.region,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        ttft_ms: r.ttft_ms,
        total_ms: r.total_ms,
        status: status(r.status),
        http_status: r.http_status,
        cogs_nanos: r.cogs,
    }
}

/// One row of `GET /admin/v1/usage/records` (what `switchyard usage records --format json`
/// prints).
fn from_json(v: &Value, i: usize) -> Result<LedgerRow, CliError> {
    let s = |k: &str| -> Result<String, CliError> {
        v[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("record {i}: '{k}' is missing or not a string"))
            .map_err(CliError::from)
    };
    let n = |k: &str| -> Result<u64, CliError> {
        v[k].as_u64()
            .ok_or_else(|| format!("record {i}: '{k}' is missing or not a number"))
            .map_err(CliError::from)
    };
    let st = s("status")?;
    let st = UsageStatus::parse(&st).ok_or_else(|| format!("record {i}: unknown status '{st}'"))?;
    Ok(LedgerRow {
        started_at_ms: v["started_at_ms"]
            .as_i64()
            .ok_or_else(|| format!("record {i}: 'started_at_ms' is missing"))?,
        model: s("model")?,
        worker: s("worker")?,
        provider: s("provider")?,
        region: s("region")?,
        prompt_tokens: n("prompt_tokens")?,
        completion_tokens: n("completion_tokens")?,
        ttft_ms: v["ttft_ms"].as_u64(),
        total_ms: n("total_ms")?,
        status: status(st),
        http_status: u16::try_from(n("http_status")?)
            .map_err(|_| format!("record {i}: 'http_status' is out of range"))?,
        cogs_nanos: v["cogs_nanos"].as_i64().unwrap_or(0),
    })
}

/// The ledger's rows, optionally of one model only.
pub async fn read_ledger(path: &Path, model: Option<&str>) -> Result<Vec<LedgerRow>, CliError> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let rows = if bytes.starts_with(b"SQLite format 3\0") {
        let store = SqliteStore::open(path)
            .await
            .map_err(|e| format!("cannot open the ledger {}: {e}", path.display()))?;
        let records = store
            .usage_records(&UsageQuery::default())
            .await
            .map_err(|e| format!("cannot read the ledger {}: {e}", path.display()));
        store.close().await;
        records?.into_iter().map(from_record).collect()
    } else {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} is neither a SQLite ledger nor JSON from `switchyard usage records --format json`: {e}",
                path.display()
            )
        })?;
        let data = v["data"]
            .as_array()
            .or_else(|| v.as_array())
            .ok_or_else(|| format!("{}: no 'data' list of usage records", path.display()))?;
        data.iter()
            .enumerate()
            .map(|(i, r)| from_json(r, i))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(match model {
        Some(m) => rows.into_iter().filter(|r| r.model == m).collect(),
        None => rows,
    })
}

/// "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(8_589_934_592), "8,589,934,592");
    }

    #[test]
    fn json_records() {
        let v = serde_json::json!({"data": [{
            "started_at_ms": 5, "model": "m", "worker": "w", "provider": "p", "region": "r",
            "prompt_tokens": 3, "completion_tokens": 4, "ttft_ms": null, "total_ms": 9,
            "status": "failed_mid_stream", "http_status": 200, "cogs_nanos": 12
        }]});
        let row = from_json(&v["data"][0], 0).unwrap();
        assert_eq!(row.status, RowStatus::FailedMidStream);
        assert_eq!(row.ttft_ms, None);
        assert_eq!(row.cogs_nanos, 12);
        let mut bad = v["data"][0].clone();
        bad["status"] = "odd".into();
        assert!(from_json(&bad, 0)
            .unwrap_err()
            .to_string()
            .contains("unknown status 'odd'"));
    }
}
