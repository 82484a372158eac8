//! The one place that maps failures to HTTP: `ApiError` → status + `{"error": "..."}`, and
//! warp rejections (unknown route, bad query, oversized body) to the same JSON shape.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::domain::ValidationError;
use crate::store::StoreError;
use crate::telemetry::WarnThrottle;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("internal error")]
    Internal(String),
    /// A temporary failure the client should retry (503).
    #[error("{0}")]
    Unavailable(String),
    /// Too many failed password checks from this client or for this user (429, Retry-After).
    #[error("too many failed logins: try again in {0} s")]
    TooManyAttempts(u64),
    /// Any other status with a message (401 with a reason, 415, ...).
    #[error("{1}")]
    Status(StatusCode, String),
}

impl warp::reject::Reject for ApiError {}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// Seconds a 503 asks the client to wait before trying again (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// What a client is told when the database is down or busy (the cause stays in the log).
pub const DATABASE_UNAVAILABLE: &str = "database unavailable; try again later";

/// Logs a database outage seen by a request: once per interval, since during an outage every
/// request sees it.
pub fn log_database_unavailable(e: &StoreError) {
    static WARN: WarnThrottle = WarnThrottle::new(std::time::Duration::from_secs(10));
    if let Some(also_failed) = WARN.admit() {
        tracing::warn!(error = %e, also_failed, "database unavailable");
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(msg) => Self::Conflict(msg),
            StoreError::Invalid(v) => Self::Invalid(v.to_string()),
            // An outage is the client's to retry (503); anything else is our bug (500).
            e if e.is_transient() => {
                log_database_unavailable(&e);
                Self::Unavailable(DATABASE_UNAVAILABLE.into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Status(status, _) => *status,
        }
    }

    pub fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let body = warp::reply::json(&serde_json::json!({ "error": self.to_string() }));
        let mut response = warp::reply::with_status(body, self.status()).into_response();
        if matches!(self, Self::TooLarge(_)) {
            response = super::closing_connection(response);
        }
        let retry_after = match &self {
            Self::TooManyAttempts(seconds) => Some(*seconds),
            Self::Unavailable(_) => Some(RETRY_AFTER_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                warp::http::HeaderValue::from(seconds),
            );
        }
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                warp::http::header::WWW_AUTHENTICATE,
                warp::http::HeaderValue::from_static("Basic realm=\"rollbridge\""),
            );
        }
        response
    }
}

/// Turns any rejection into a JSON error response.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        match e {
            ApiError::Invalid(m) => ApiError::Invalid(m.clone()),
            ApiError::Unauthorized => ApiError::Unauthorized,
            ApiError::NotFound => ApiError::NotFound,
            ApiError::Conflict(m) => ApiError::Conflict(m.clone()),
            ApiError::TooLarge(n) => ApiError::TooLarge(*n),
            ApiError::Internal(m) => ApiError::Internal(m.clone()),
            ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
            ApiError::TooManyAttempts(s) => ApiError::TooManyAttempts(*s),
            ApiError::Status(code, m) => ApiError::Status(*code, m.clone()),
        }
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::Invalid(format!("invalid query string: {e}"))
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        let body = warp::reply::json(&serde_json::json!({ "error": "method not allowed" }));
        return Ok(warp::reply::with_status(body, StatusCode::METHOD_NOT_ALLOWED).into_response());
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::TooLarge(0)
    } else {
        ApiError::Invalid(format!("bad request: {rejection:?}"))
    };
    Ok(error.into_response())
}
