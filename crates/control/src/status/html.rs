//! What the public page and the admin view share: escaping, the stylesheet, the page shell
//! and the response headers. Everything is inline (no CDN, no script): the page works offline
//! and its Content-Security-Policy can forbid loading anything at all.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML content and double-quoted attributes. Model and region names come
/// from configuration and from workers' registrations, so they are escaped like any input.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Mobile first: one column, charts full width; two or three columns on wider screens.
const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Liberation Sans',sans-serif;\
color:#111827;background:#f3f4f6}\
main{max-width:1100px;margin:0 auto;padding:16px}\
h1{font-size:1.35rem;margin:0 0 8px}h2{font-size:1.05rem;margin:20px 0 8px}\
a{color:#1e40af}\
.muted{color:#6b7280;font-size:.85rem}\
.banner{padding:12px 14px;border-radius:10px;font-weight:600;margin:8px 0}\
.banner.s-operational{background:#dcfce7;color:#14532d}\
.banner.s-degraded{background:#fef3c7;color:#78350f}\
.banner.s-down{background:#fee2e2;color:#7f1d1d}\
.grid{display:grid;grid-template-columns:1fr;gap:12px}\
.card{background:#fff;border-radius:10px;padding:12px;box-shadow:0 1px 2px rgba(0,0,0,.06)}\
ul.scopes{list-style:none;margin:0;padding:0}\
ul.scopes li{display:flex;flex-wrap:wrap;align-items:center;gap:4px 8px;padding:8px 0;\
border-top:1px solid #f3f4f6}\
ul.scopes li:first-child{border-top:0}\
.dot{width:10px;height:10px;border-radius:50%;flex:none}\
.s-operational .dot,.dot.s-operational{background:#16a34a}\
.dot.s-degraded{background:#f59e0b}.dot.s-down{background:#dc2626}\
.name{font-weight:600}.state{margin-left:auto;font-size:.9rem}\
.detail{flex-basis:100%;color:#6b7280;font-size:.8rem;padding-left:18px}\
nav.tabs{display:flex;gap:6px;margin:4px 0 10px}\
nav.tabs a{padding:6px 12px;border-radius:999px;background:#e5e7eb;color:#111827;\
text-decoration:none;font-size:.9rem}\
nav.tabs a[aria-current]{background:#111827;color:#fff}\
figure.chart{margin:0;background:#fff;border-radius:10px;padding:12px;\
box-shadow:0 1px 2px rgba(0,0,0,.06)}\
figcaption{display:flex;justify-content:space-between;gap:8px;margin-bottom:6px}\
figcaption .title{font-weight:600}figcaption .headline{font-variant-numeric:tabular-nums}\
.frame{position:relative}\
svg.plot{display:block;width:100%;height:130px;background:#fafafa;border-radius:6px}\
.ylab{position:absolute;left:4px;font-size:.7rem;color:#6b7280;background:rgba(250,250,250,.8);\
padding:0 2px}\
.ylab.top{top:2px}.ylab.bottom{bottom:2px}\
.empty{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;\
color:#9ca3af;font-size:.85rem}\
.xlab{display:flex;justify-content:space-between;gap:6px;font-size:.7rem;color:#6b7280;margin-top:2px}\
.reflabel{color:#b45309}\
table{width:100%;border-collapse:collapse;font-size:.85rem;font-variant-numeric:tabular-nums}\
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #f3f4f6;white-space:nowrap}\
th{color:#6b7280;font-weight:600}\
.scroll{overflow-x:auto}\
.neg{color:#b91c1c;font-weight:600}\
footer{margin:24px 0 8px;color:#6b7280;font-size:.8rem}\
@media (min-width:720px){.grid.two{grid-template-columns:1fr 1fr}\
.grid.three{grid-template-columns:1fr 1fr 1fr}main{padding:24px}}\
";

/// A whole HTML document around `body`.
pub fn document(title: &str, extra_head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title>{extra_head}<style>{CSS}</style></head><body><main>{body}</main>\
         </body></html>",
        esc(title)
    )
}

/// An HTML response that may load nothing from anywhere (styles are inline, there is no
/// script), cached by browsers and proxies for `max_age_s` seconds (0: not stored at all).
pub fn response(html: String, max_age_s: u64) -> Response {
    let cache = if max_age_s == 0 {
        "no-store".to_string()
    } else {
        format!("public, max-age={max_age_s}")
    };
    let mut resp = html.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&cache) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    resp
}
