//! Who may see `/admin/status`: the admin token as `Authorization: Bearer <token>` (scripts,
//! like the rest of the admin API), or as the password of HTTP basic auth (a browser, which
//! then asks for it once; any user name). Never from the query string: a token in a URL ends
//! up in browser history, proxy logs and `Referer` headers.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::state::ControlState;
use crate::token::{surface_off, verify, Verdict};
use switchyard_gateway::auth::bearer;

pub struct AdminViewer;

/// The password of an `Authorization: Basic` header.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// 401 with the challenge that makes a browser ask for the token.
fn challenge() -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        "The admin status page needs the admin token: as 'Authorization: Bearer <token>', or \
         as the password of HTTP basic auth.\n",
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Switchyard admin\", charset=\"UTF-8\""),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl FromRequestParts<Arc<ControlState>> for AdminViewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ControlState>,
    ) -> Result<Self, Self::Rejection> {
        let presented = match bearer(&parts.headers) {
            Some(token) => Some(token.to_string()),
            None => basic_password(&parts.headers),
        };
        match verify(state.admin_token.as_ref(), presented.as_deref()) {
            Verdict::Accepted => Ok(AdminViewer),
            Verdict::Refused => Err(challenge()),
            Verdict::Off => Err(surface_off(parts).into_response()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_password_is_the_token() {
        let mut h = HeaderMap::new();
        // base64("admin:s3cret:with:colons")
        let enc = base64::engine::general_purpose::STANDARD.encode("admin:s3cret:with:colons");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap(),
        );
        assert_eq!(basic_password(&h).as_deref(), Some("s3cret:with:colons"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_password(&h), None);
        let empty = base64::engine::general_purpose::STANDARD.encode("admin:");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {empty}")).unwrap(),
        );
        assert_eq!(basic_password(&h), None);
    }
}
