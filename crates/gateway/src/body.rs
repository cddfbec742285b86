//! Reading a request body under the size limit, with the 413 in the OpenAI shape rather than
//! axum's plain-text rejection.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;

use crate::error::GatewayError;

pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    // Refuse at once when the client declares a body that is too large.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(GatewayError::BodyTooLarge { size: len, limit });
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            GatewayError::BodyTooLarge {
                size: limit as u64 + 1,
                limit,
            }
        } else {
            GatewayError::InvalidRequest {
                message: format!("Could not read the request body: {e}"),
                param: None,
            }
        }
    })
}
