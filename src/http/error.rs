//! The web layer's error: every failure leaves as `{"error": {"code", "message"}}` with the right status. Domain
//! refusals keep their stable code; runtime failures map to 429/503/500 and never expose internals (those are logged).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::DomainError;
use crate::runtime::{ActivationFailure, CallError};

/// An HTTP error with a stable machine-readable code and a human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a client should wait before retrying (429/503).
    pub retry_after: Option<u32>,
}

/// The body of every error response (the OpenAPI document's `Error`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
#[serde(deny_unknown_fields)]
pub(super) struct Body<'a> {
    error: Inner<'a>,
}

/// What went wrong: a stable machine-readable `code` (docs/API.md lists them all) and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
#[serde(deny_unknown_fields)]
pub(super) struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }

    /// The JSON body, also used for WebSocket error frames.
    pub fn body(code: &str, message: &str) -> serde_json::Value {
        serde_json::json!({ "error": { "code": code, "message": message } })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(Body { error: Inner { code: self.code, message: &self.message } })
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            DomainError::NotFound { .. } => StatusCode::NOT_FOUND,
            DomainError::Conflict(_) => StatusCode::CONFLICT,
            DomainError::Invalid { .. } => StatusCode::BAD_REQUEST,
            DomainError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DomainError::TaskArchived(_) | DomainError::WorkspaceUnavailable(_) => StatusCode::CONFLICT,
            DomainError::Git { unreachable: false, .. } => StatusCode::UNPROCESSABLE_ENTITY,
            DomainError::Git { unreachable: true, .. } => StatusCode::BAD_GATEWAY,
            DomainError::Db(err) => {
                tracing::error!(error = %err, "storage error");
                return ApiError::internal();
            }
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl<E: Into<ApiError> + std::fmt::Display> From<CallError<E>> for ApiError {
    fn from(e: CallError<E>) -> Self {
        match e {
            CallError::Handler(e) => e.into(),
            CallError::Overloaded { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "too many requests in flight; retry")
            },
            CallError::Timeout(_) => ApiError::unavailable("timeout", "timed out waiting for capacity; retry"),
            CallError::ShuttingDown => ApiError::unavailable("shutting_down", "the service is shutting down"),
            CallError::Activation(a) => match a.reason {
                ActivationFailure::Key(k) => ApiError::bad_request("invalid_input", k.to_string()),
                ActivationFailure::ShuttingDown => {
                    ApiError::unavailable("shutting_down", "the service is shutting down")
                }
                ActivationFailure::TooManyLive(_) => ApiError::unavailable("overloaded", "too many live actors; retry"),
                ActivationFailure::StoreUnavailable(why) => {
                    tracing::warn!(kind = a.kind, key = %a.key, error = %why, "commit log unreachable at activation");
                    ApiError::unavailable(
                        "store_unavailable",
                        "the store of record (PostgreSQL) did not answer this node in time; retry after Retry-After",
                    )
                }
                ActivationFailure::NotOwner(shard) => ApiError::unavailable(
                    "not_owner",
                    format!(
                        "shard {shard} is not served by this node (another node serves it, or it is moving between \
                         nodes); retry the request after Retry-After"
                    ),
                ),
                other => {
                    tracing::error!(kind = a.kind, key = %a.key, error = %other, "activation failed");
                    ApiError::internal()
                }
            },
            CallError::NotFound { kind, key } => ApiError::not_found(format!("{} {key:?} not found", kind_noun(kind))),
            CallError::Unavailable { kind, key } => {
                tracing::error!(kind, %key, "actor unavailable");
                ApiError::unavailable("unavailable", "temporarily unavailable; retry")
            }
            other @ (CallError::Panicked { .. } | CallError::Storage { .. }) => {
                tracing::error!(error = %other, "call failed");
                ApiError::internal()
            }
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::internal()
    }
}

impl From<crate::runtime::idempotency::RecordError> for ApiError {
    fn from(e: crate::runtime::idempotency::RecordError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::internal()
    }
}

/// What a runtime kind is called in a message to a client (the key is shown with it).
fn kind_noun(kind: &str) -> &str {
    match kind {
        "github_data" => "GitHub connection of organization",
        "audit_log" => "audit log of organization",
        other => other,
    }
}

impl From<crate::runtime::SnapshotError> for ApiError {
    fn from(e: crate::runtime::SnapshotError) -> Self {
        match e {
            crate::runtime::SnapshotError::UnknownTopic { topic, .. } => {
                ApiError::bad_request("unknown_topic", format!("unknown topic {topic:?}"))
            }
            other => {
                tracing::error!(error = %other, "snapshot failed");
                ApiError::internal()
            }
        }
    }
}

impl From<crate::runtime::ConnectError> for ApiError {
    fn from(e: crate::runtime::ConnectError) -> Self {
        match e {
            // The actor's own refusal: its code reaches the client as is (docs/API.md lists the hooks' codes).
            crate::runtime::ConnectError::Refused(r) => ApiError::new(StatusCode::FORBIDDEN, r.code, r.message),
            crate::runtime::ConnectError::Snapshot(e) => e.into(),
        }
    }
}

/// Errors of the request body and query extractors as JSON: 413 for too large, 415 for a non-JSON body, 400 for
/// malformed JSON or fields.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let e = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", err.to_string())
        }
        J::ContentType => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "expected application/json")
        }
        J::Deserialize(d) if d.is_data() => ApiError::bad_request("invalid_field", d.to_string()),
        _ => ApiError::bad_request("malformed_json", err.to_string()),
    };
    e.into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", err.to_string()).into()
}

pub fn path_error(err: actix_web::error::PathError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", err.to_string()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ActivationError;

    fn status_and_code(e: CallError<DomainError>) -> (u16, &'static str, Option<u32>) {
        let e = ApiError::from(e);
        (e.status.as_u16(), e.code, e.retry_after)
    }

    #[test]
    fn every_failure_has_its_status_and_stable_code() {
        let handler = |d| status_and_code(CallError::Handler(d));
        assert_eq!(handler(DomainError::not_found("task", "t1")), (404, "not_found", None));
        assert_eq!(handler(DomainError::Conflict("x".into())), (409, "conflict", None));
        assert_eq!(handler(DomainError::invalid("title", "empty")), (400, "invalid_input", None));
        assert_eq!(handler(DomainError::Unprocessable("x".into())), (422, "unprocessable", None));
        assert_eq!(handler(DomainError::TaskArchived("x".into())), (409, "task_archived", None));
        assert_eq!(handler(DomainError::Db(diesel::result::Error::NotFound)), (500, "internal", None));
        let overloaded = CallError::Overloaded { kind: "task", key: "k".into(), capacity: 1 };
        assert_eq!(status_and_code(overloaded), (429, "overloaded", Some(1)));
        assert_eq!(status_and_code(CallError::Timeout(std::time::Duration::ZERO)), (503, "timeout", Some(1)));
        assert_eq!(status_and_code(CallError::ShuttingDown), (503, "shutting_down", Some(1)));
        let activation = |reason| CallError::Activation(ActivationError { kind: "task", key: "k".into(), reason });
        let store = activation(ActivationFailure::StoreUnavailable("no answer within 2s".into()));
        assert_eq!(status_and_code(store), (503, "store_unavailable", Some(1)));
        let damaged = activation(ActivationFailure::Load("commit log is damaged".into()));
        assert_eq!(status_and_code(damaged), (500, "internal", None));
        let unavailable = CallError::Unavailable { kind: "task", key: "k".into() };
        assert_eq!(status_and_code(unavailable), (503, "unavailable", Some(1)));
        let panicked = CallError::<DomainError>::Panicked {
            kind: "task",
            key: "k".into(),
            message: "m",
            panic: "secret detail".into(),
        };
        let e = ApiError::from(panicked);
        assert_eq!((e.status.as_u16(), e.code), (500, "internal"));
        assert!(!e.message.contains("secret detail"), "internals stay in the log");
    }

    #[test]
    fn the_body_is_the_documented_shape_with_retry_after() {
        let e = ApiError::from(CallError::<DomainError>::Overloaded { kind: "task", key: "k".into(), capacity: 1 });
        let res = e.error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(ApiError::body("c", "m"), serde_json::json!({ "error": { "code": "c", "message": "m" } }));
    }
}
