//! What `switchyard tenants|keys|usage` share: the admin API over HTTP (with the API's own
//! error message on failure) and a small aligned-table printer.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::error::CliError;

/// Where the gateway is and how to prove we are its admin. Global, so they may come after
/// the subcommand (`switchyard keys list --url ...`).
#[derive(Args, Clone, Debug)]
pub struct AdminArgs {
    /// Base URL of the gateway's admin port ([admin] listen).
    #[arg(
        long,
        global = true,
        env = crate::gateway_url::ADMIN_URL_ENV,
        default_value = crate::gateway_url::DEFAULT_ADMIN_URL
    )]
    pub url: String,
    /// The gateway's admin token.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub tls: crate::tls_client::TlsClientArgs,
}

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// An error with its causes ("error sending request: ... : received fatal alert:
/// CertificateRequired"): reqwest's own message hides what TLS said.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut shown = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        shown.push_str(": ");
        shown.push_str(&cause.to_string());
        source = cause.source();
    }
    shown
}

/// Loopback is reached directly: an HTTP(S)_PROXY meant for the outside world must not
/// swallow calls to the gateway on this machine.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> Result<Self, CliError> {
        let token = args
            .admin_token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                    "no admin token: pass --admin-token or set SWITCHYARD_ADMIN_TOKEN \
                     (`switchyard serve` prints one at start when it generates it)"
                        .into(),
                )
            })?;
        let base = args.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| CliError::Usage(format!("--url '{}' is not a URL: {e}", args.url)))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120));
        if is_loopback(&parsed) {
            builder = builder.no_proxy();
        }
        let builder = args.tls.apply(builder)?;
        let http = builder
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self { base, token, http })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<reqwest::Response, CliError> {
        let url = format!("{}/admin/v1{path}", self.base);
        let query: Vec<&(&str, String)> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .query(&query);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                CliError::Unreachable {
                    url: self.base.clone(),
                    source: e,
                }
            } else {
                let hint = if url.starts_with("https:") {
                    " (an https port may need --ca-cert, or a client certificate: --client-cert and --client-key)"
                } else {
                    ""
                };
                CliError::Failed(format!("request to {url} failed: {}{hint}", with_causes(&e)))
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(api_error(status.as_u16(), &text))
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let resp = self.send(reqwest::Method::GET, path, query, None).await?;
        resp.json()
            .await
            .map_err(|e| format!("the gateway's answer is not JSON: {e}"))
            .map_err(CliError::from)
    }

    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> Result<String, CliError> {
        let resp = self.send(reqwest::Method::GET, path, query, None).await?;
        resp.text()
            .await
            .map_err(|e| format!("cannot read the gateway's answer: {e}"))
            .map_err(CliError::from)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let resp = self
            .send(reqwest::Method::POST, path, &[], Some(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| format!("the gateway's answer is not JSON: {e}"))
            .map_err(CliError::from)
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        let resp = self.send(reqwest::Method::DELETE, path, &[], None).await?;
        resp.json()
            .await
            .map_err(|e| format!("the gateway's answer is not JSON: {e}"))
            .map_err(CliError::from)
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let resp = self
            .send(reqwest::Method::PATCH, path, &[], Some(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| format!("the gateway's answer is not JSON: {e}"))
            .map_err(CliError::from)
    }
}

/// The API's error message (OpenAI shape), with a hint where one helps.
fn api_error(status: u16, body: &str) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let message = error
        .and_then(|e| e["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().chars().take(300).collect());
    let code = error.and_then(|e| e["code"].as_str()).unwrap_or("");
    let hint = match (status, code) {
        (401, _) => " (check --admin-token / SWITCHYARD_ADMIN_TOKEN)",
        (404, "unknown_url") => {
            " (is the admin API enabled on this gateway? it needs an admin token at start)"
        }
        _ => "",
    };
    CliError::Api {
        status,
        code: if code.is_empty() {
            String::new()
        } else {
            format!(", {code}")
        },
        message,
        hint,
    }
}

pub fn print_json(v: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// The items of a list response (`{"data": [...]}`); none when it has no such array.
pub fn data(list: &Value) -> &[Value] {
    list["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// One table row per item of a list response.
pub fn data_rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    data(list).iter().map(row).collect()
}

/// A JSON value as a table cell: strings bare, null as "-".
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    }
}

/// "$1.234567" from a `*_usd` field.
pub fn money(v: &Value) -> String {
    match v.as_str() {
        Some(s) if s.starts_with('-') => format!("-${}", &s[1..]),
        Some(s) => format!("${s}"),
        None => "-".into(),
    }
}

fn numeric(s: &str) -> bool {
    !s.is_empty()
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '$' | '%' | ','))
}

/// Aligned columns: numbers to the right, everything else to the left, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain([headers[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let right: Vec<bool> = (0..cols)
        .map(|i| {
            let mut cells = rows
                .iter()
                .filter_map(|r| r.get(i))
                .filter(|c| !c.is_empty() && *c != "-");
            let mut any = false;
            let all = cells.all(|c| {
                any = true;
                numeric(c)
            });
            any && all
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            let last = i + 1 == cols;
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(
            (0..cols)
                .map(|i| row.get(i).map(String::as_str).unwrap_or(""))
                .collect(),
        ));
        out.push('\n');
    }
    out
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(headers, rows));
}

/// "name  value" lines for one record.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        println!("{k:<width$}  {v}");
    }
}

/// `a,b, c` → ["a", "b", "c"].
pub fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let rows = vec![
            vec!["acme".into(), "12".into(), "$0.5".into()],
            vec!["b".into(), "3456".into(), "-".into()],
        ];
        assert_eq!(
            table(&["ID", "TOKENS", "COST"], &rows),
            "ID    TOKENS  COST\nacme      12  $0.5\nb       3456     -\n"
        );
    }

    #[test]
    fn api_errors_carry_the_message_and_code() {
        let body = r#"{"error":{"message":"Tenant 'x' does not exist.","type":"invalid_request_error","param":null,"code":"not_found"}}"#;
        assert_eq!(
            api_error(404, body).to_string(),
            "Tenant 'x' does not exist. [HTTP 404, not_found]"
        );
        assert!(api_error(401, "{}").to_string().contains("--admin-token"));
        let bad_gateway = api_error(502, "bad gateway");
        assert_eq!(bad_gateway.to_string(), "bad gateway [HTTP 502]");
        assert_eq!(bad_gateway.exit_code(), std::process::ExitCode::from(4));
    }

    #[test]
    fn money_and_lists() {
        assert_eq!(money(&Value::from("1.500000")), "$1.500000");
        assert_eq!(money(&Value::from("-0.000001")), "-$0.000001");
        assert_eq!(comma_list("a, b,,c "), ["a", "b", "c"]);
    }
}
