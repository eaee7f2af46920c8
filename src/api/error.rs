//! Maps every failure to the OCI error body
//! `{"errors":[{"code","message","detail"}]}` via the one code table in `oci`.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::core::Error as CoreError;
use crate::oci::ErrorCode;

/// An error answer. `internal` carries the cause of a 500 to the logging
/// middleware; it never reaches the client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    status: Option<StatusCode>,
    message: String,
    detail: Option<Value>,
    headers: Vec<(HeaderName, String)>,
    internal: Option<String>,
}

/// Response extension read by the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: None,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
            internal: None,
        }
    }

    pub fn bare(code: ErrorCode) -> ApiError {
        Self::new(code, code.message())
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = Some(status);
        self
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn with_header_pair(self, (name, value): (HeaderName, String)) -> ApiError {
        self.with_header(name, value)
    }

    fn internal(cause: String) -> ApiError {
        let mut e = Self::bare(ErrorCode::Unknown);
        e.internal = Some(cause);
        e
    }
}

fn range_header(current: u64) -> String {
    format!("0-{}", current.saturating_sub(1))
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        use ErrorCode as C;
        let msg = e.to_string();
        match e {
            CoreError::BlobUnknown => ApiError::new(C::BlobUnknown, msg),
            CoreError::UploadUnknown => ApiError::new(C::BlobUploadUnknown, msg),
            CoreError::UploadOutOfOrder { current } => ApiError::new(C::RangeInvalid, msg)
                .with_header(axum::http::header::RANGE, range_header(current)),
            CoreError::UploadInvalid(_) => ApiError::new(C::BlobUploadInvalid, msg),
            CoreError::SizeInvalid { .. } => ApiError::new(C::SizeInvalid, msg),
            CoreError::DigestMismatch {
                ref expected,
                ref actual,
            } => {
                let detail = json!({"expected": expected, "actual": actual});
                ApiError::new(C::DigestInvalid, msg).with_detail(detail)
            }
            CoreError::RangeNotSatisfiable { size } => ApiError::new(C::RangeInvalid, msg)
                .with_header(axum::http::header::CONTENT_RANGE, format!("bytes */{size}")),
            CoreError::ManifestUnknown => ApiError::new(C::ManifestUnknown, msg),
            CoreError::ManifestNotAcceptable { .. } => ApiError::new(C::ManifestUnknown, msg),
            CoreError::ManifestInvalid(_) => ApiError::new(C::ManifestInvalid, msg),
            CoreError::ManifestBlobUnknown(ref d) => {
                let detail = json!({"digest": d});
                ApiError::new(C::ManifestBlobUnknown, msg).with_detail(detail)
            }
            CoreError::ManifestTooLarge { .. } => {
                ApiError::new(C::SizeInvalid, msg).with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            CoreError::NameUnknown => ApiError::new(C::NameUnknown, msg),
            CoreError::Denied(_) => ApiError::new(C::Denied, msg),
            CoreError::Invalid(_) => ApiError::new(C::InvalidRequest, msg),
            CoreError::Unavailable(_) => ApiError::new(C::Unavailable, msg)
                .with_header(axum::http::header::RETRY_AFTER, "1".into()),
            CoreError::Storage(crate::storage::StorageError::Body(e)) => {
                // The client went away or sent a broken body; nothing to log as ours.
                ApiError::new(
                    C::BlobUploadInvalid,
                    format!("reading the request body failed: {e}"),
                )
            }
            CoreError::Storage(_) | CoreError::Metadata(_) | CoreError::GcLeaseLost => {
                ApiError::internal(msg)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let mut entry = json!({"code": self.code.code(), "message": self.message});
        if let Some(detail) = self.detail {
            entry["detail"] = detail;
        }
        let body = json!({ "errors": [entry] }).to_string();
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        if let Some(cause) = self.internal {
            response.extensions_mut().insert(InternalError(cause));
        }
        response
    }
}
