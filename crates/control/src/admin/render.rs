//! Money in and out of the admin API, and CSV. Amounts go out twice: as a decimal USD string
//! with six decimals for people, and as integer nano-dollars for programs that sum them.
//! Amounts come in as decimal strings (or JSON numbers) and are parsed digit by digit, so
//! "0.1" is exactly 100,000,000 nano-dollars.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchyard_metering::money::{format_usd, usd_to_nanos, Nanos, NANOS_PER_USD};

use switchyard_gateway::error::GatewayError;

/// "12.345678": six decimals, no currency sign.
pub fn usd(n: Nanos) -> String {
    format_usd(n).replacen('$', "", 1)
}

/// An amount as its decimal USD string: the `_usd` field beside each `_nanos` one in typed
/// responses.
#[derive(Debug, Clone, Copy)]
pub struct Usd(pub Nanos);

impl serde::Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&usd(self.0))
    }
}

/// A price from config (USD per 1M tokens) as money fields.
pub fn price_nanos(per_million: f64) -> Nanos {
    usd_to_nanos(per_million)
}

/// Parses a decimal USD amount ("25", "25.00", "-0.000000001") exactly into nano-dollars.
pub fn parse_usd_str(s: &str) -> Option<Nanos> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty())
        || !all_digits(whole)
        || !all_digits(frac)
        || frac.len() > 9
        || whole.len() > 12
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // At most nine fractional digits, each worth a tenth of the one before it.
    let mut frac_nanos: i64 = 0;
    let mut unit = NANOS_PER_USD / 10;
    for b in frac.bytes() {
        frac_nanos += i64::from(b - b'0') * unit;
        unit /= 10;
    }
    let n = whole.checked_mul(NANOS_PER_USD)?.checked_add(frac_nanos)?;
    Some(if neg { -n } else { n })
}

/// A USD amount given as a JSON string or number.
pub fn parse_usd(v: &Value, param: &str) -> Result<Nanos, GatewayError> {
    let parsed = match v {
        Value::String(s) => parse_usd_str(s),
        // A JSON number's shortest decimal form ("0.1") is what the client wrote; parse that
        // rather than the binary float. Exponent forms fall back to rounding the float.
        Value::Number(n) => {
            let text = n.to_string();
            parse_usd_str(&text).or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e12)
                    .map(usd_to_nanos)
            })
        }
        _ => None,
    };
    parsed.ok_or_else(|| GatewayError::InvalidRequest {
        message: format!(
            "Invalid '{param}': give a USD amount like \"25.00\" (at most 9 decimals)."
        ),
        param: Some(param.to_string()),
    })
}

/// One CSV field: quoted when it holds a separator, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A CSV document: a header line, then one line per row, CRLF-free (`\n`).
pub fn csv(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for row in rows {
        let line: Vec<String> = row.iter().map(|f| field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

pub fn csv_response(body: String, filename: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usd_amounts_parse_exactly() {
        assert_eq!(parse_usd_str("25.00"), Some(25 * NANOS_PER_USD));
        assert_eq!(parse_usd_str("0.1"), Some(100_000_000));
        assert_eq!(parse_usd_str(".5"), Some(500_000_000));
        assert_eq!(parse_usd_str("3."), Some(3 * NANOS_PER_USD));
        assert_eq!(parse_usd_str("-0.000000001"), Some(-1));
        assert_eq!(parse_usd_str("1.0000000001"), None);
        for bad in ["", ".", "-", "1,00", "1e3", "abc", "1.2.3", "9999999999999"] {
            assert_eq!(parse_usd_str(bad), None, "{bad}");
        }
        assert_eq!(parse_usd(&json!(0.1), "x").unwrap(), 100_000_000);
        assert_eq!(parse_usd(&json!(25), "x").unwrap(), 25 * NANOS_PER_USD);
        assert_eq!(parse_usd(&json!("2.5"), "x").unwrap(), 2_500_000_000);
        let err = parse_usd(&json!(true), "amount_usd").unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("amount_usd"));
    }

    #[test]
    fn money_goes_out_with_six_decimals_and_in_nanos() {
        assert_eq!(usd(3_200_000), "0.003200");
        assert_eq!(usd(-1_500_000_000), "-1.500000");
        // Rounded half away from zero to the micro-dollar, as a string.
        assert_eq!(json!(Usd(1_990)), json!("0.000002"));
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let text = csv(
            &["a", "b"],
            [
                vec!["x".into(), "1".into()],
                vec!["a,b".into(), "say \"hi\"".into()],
            ],
        );
        assert_eq!(text, "a,b\nx,1\n\"a,b\",\"say \"\"hi\"\"\"\n");
    }
}
