//! `Idempotency-Key` on the creating routes (docs/API.md, "Idempotent creation"): the header's validation, the key's
//! scope (caller and route) and fingerprint (the parsed body), the stored answers a retry receives, and the refusals.
//!
//! The key is recorded by the actor that owns the creation, in the creation's own transaction
//! ([`crate::runtime::idempotency`]); the route then stores its whole answer with it, and a retry with the same key
//! gets that answer verbatim (plus `Idempotent-Replayed: true`). A creating route runs to completion even when its
//! client goes away ([`to_completion`]): the client's retry then finds the answer instead of a half-made creation.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};

use super::{ApiError, Caller};
use crate::runtime::idempotency::{AnswerIdempotency, ReleaseIdempotency};
use crate::runtime::{Entity, IdempotencyKey, Once, Recorded, Registry};

/// The request header carrying the client's key.
pub const HEADER: &str = "idempotency-key";
/// Response header set on an answer replayed for a retried key.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// The header as the OpenAPI document describes it on the creating routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct KeyHeader {
    /// A fresh key per new request, the same key when retrying it: the retry gets the first answer and nothing is
    /// created twice (docs/API.md, "Idempotent creation"). 1 to 200 printable ASCII characters; the pattern also keeps
    /// spaces off both ends, which HTTP would strip.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 200,
        pattern = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
    )]
    pub key: Option<String>,
}

/// The request's key, if it sent one: scoped to the caller and `route` (method and path with its ids, so the same
/// key on another path is another key), with the SHA-256 of the parsed `body` as the request's fingerprint (so
/// `{}` and an absent optional body, or reordered fields, are the same request). 400 `invalid_idempotency_key` for a
/// key that is empty, longer than [`MAX_KEY_LEN`], not printable ASCII, or sent twice.
pub fn key(
    req: &actix_web::HttpRequest,
    caller: &Caller,
    route: &str,
    body: &impl Serialize,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all(HEADER);
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key header"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(invalid(&format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters")));
    }
    let key = String::from_utf8_lossy(bytes).into_owned();
    let body = serde_json::to_string(body).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise a request body");
        ApiError::internal()
    })?;
    let scope = format!("{} {route}", caller.user_id);
    Ok(Some(IdempotencyKey { scope, key, fingerprint: super::auth::hash_secret(&body) }))
}

fn invalid(message: &str) -> ApiError {
    ApiError::bad_request("invalid_idempotency_key", message)
}

/// 422: the key was first used with another request.
pub fn reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request; use a new key for a new request",
    )
}

/// 409 + `Retry-After`: the key's first request is still running a step outside foundry.
pub fn in_progress() -> ApiError {
    ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed; retry",
        )
    }
}

/// A route's answer as stored with its key.
#[derive(Serialize, Deserialize)]
struct Answer {
    status: u16,
    body: serde_json::Value,
}

/// The stored answer, as a response marked replayed.
pub fn replay(stored: &str) -> Result<HttpResponse, ApiError> {
    stored_answer(stored, true)
}

/// The stored answer, marked as a replay or not.
fn stored_answer(stored: &str, replayed: bool) -> Result<HttpResponse, ApiError> {
    let answer: Answer = serde_json::from_str(stored).map_err(|e| {
        tracing::error!(error = %e, "unreadable stored idempotent answer");
        ApiError::internal()
    })?;
    let status = StatusCode::from_u16(answer.status).map_err(|_| ApiError::internal())?;
    let mut res = HttpResponse::build(status);
    if replayed {
        res.insert_header((REPLAYED, "true"));
    }
    Ok(res.json(answer.body))
}

/// Where a keyed creation stands after its owner handled it.
pub enum Step<T> {
    /// Created now (`false`), or created before and never answered (`true`): finish the route and answer.
    Finish(T, bool),
    /// Answered before: this is that answer.
    Answered(HttpResponse),
}

/// The next step of a keyed creation, or its refusal (422 reused key, 409 in progress).
pub fn step<T>(once: Once<T>) -> Result<Step<T>, ApiError> {
    match once {
        Once::Applied(v) => Ok(Step::Finish(v, false)),
        Once::Replayed { output, answer: None } => Ok(Step::Finish(output, true)),
        Once::Replayed { answer: Some(stored), .. } => Ok(Step::Answered(replay(&stored)?)),
        Once::KeyReused => Err(reused()),
        Once::InProgress => Err(in_progress()),
    }
}

/// What a claim of a key found before it ([`Recorded::Absent`]: claimed now): go on, or answer or refuse now.
pub fn claimed(before: Recorded) -> Result<Option<HttpResponse>, ApiError> {
    match before {
        Recorded::Absent | Recorded::Created { answer: None, .. } => Ok(None),
        Recorded::Created { answer: Some(stored), .. } => replay(&stored).map(Some),
        Recorded::Mismatch => Err(reused()),
        Recorded::Pending => Err(in_progress()),
    }
}

/// Stores `status` + `body` as the key's answer on `owner` (the first stored answer wins) and answers with the
/// stored one. The creation is done by now: if the answer cannot be stored, this request is answered anyway and a
/// retry re-derives the answer from the recorded creation.
pub async fn answer<E: Entity>(
    registry: &Registry<E>,
    owner: &E::Key,
    key: &IdempotencyKey,
    status: StatusCode,
    body: impl Serialize,
    replayed: bool,
) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_value(body).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise an answer");
        ApiError::internal()
    })?;
    let mine = Answer { status: status.as_u16(), body };
    let text = serde_json::to_string(&mine).map_err(|_| ApiError::internal())?;
    match registry.mutate(owner, AnswerIdempotency::new(key.clone(), text.clone())).await {
        // A concurrent retry finished the creation's steps and stored its answer first (it may differ in what it read
        // later, e.g. a version): give that one, so every request with the key gets the same answer. The request that
        // created is still not a replay.
        Ok(Some(stored)) if stored != text => return stored_answer(&stored, replayed),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not store an idempotent answer; a retry will re-derive it"),
    }
    let mut res = HttpResponse::build(status);
    if replayed {
        res.insert_header((REPLAYED, "true"));
    }
    Ok(res.json(mine.body))
}

/// Forgets a key whose creation was refused (best effort: a left-over claim only refuses this key for another
/// request, and expires).
pub async fn release<E: Entity>(registry: &Registry<E>, owner: &E::Key, key: &IdempotencyKey) {
    if let Err(e) = registry.mutate_existing(owner, ReleaseIdempotency::new(key.clone())).await {
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
}

/// Runs a creating route's work to its end even if the client disconnects (actix-web drops a handler's future when
/// its connection goes): a creation is never left half-made by a client giving up, and that client's retry finds
/// it finished.
pub async fn to_completion<F>(work: F) -> Result<HttpResponse, ApiError>
where
    F: Future<Output = Result<HttpResponse, ApiError>> + 'static,
{
    actix_rt::spawn(work).await.map_err(|e| {
        tracing::error!(error = %e, "a creating request's work failed");
        ApiError::internal()
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn work_run_to_completion_survives_its_caller_going_away() {
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let caller = to_completion(async move {
            let _ = wait.await;
            let _ = done_tx.send(());
            Ok(HttpResponse::Created().finish())
        });
        // The client disconnects: actix-web drops the handler's future before the work is done.
        let gone = tokio::time::timeout(std::time::Duration::from_millis(20), caller).await;
        assert!(gone.is_err(), "the work was still waiting");
        release.send(()).unwrap();
        done.await.expect("the work finished although nobody waited for it");
    }

    #[test]
    fn keys_are_validated_and_scoped() {
        let caller = Caller { user_id: "u1".into(), session_id: "s".into(), expires_at_ms: 0, token_hash: "h".into() };
        let req = |v: &str| actix_web::test::TestRequest::default().insert_header((HEADER, v)).to_http_request();
        let body = serde_json::json!({ "a": 1 });
        let k = key(&req("abc"), &caller, "POST /x", &body).unwrap().unwrap();
        assert_eq!((k.scope.as_str(), k.key.as_str()), ("u1 POST /x", "abc"));
        let other = key(&req("abc"), &caller, "POST /x", &serde_json::json!({ "a": 2 })).unwrap().unwrap();
        assert_ne!(k.fingerprint, other.fingerprint);
        assert!(key(&actix_web::test::TestRequest::default().to_http_request(), &caller, "POST /x", &body)
            .unwrap()
            .is_none());
        for bad in [String::new(), "x".repeat(MAX_KEY_LEN + 1)] {
            let err = key(&req(&bad), &caller, "POST /x", &body).unwrap_err();
            assert_eq!(err.code, "invalid_idempotency_key");
        }
        assert!(key(&req(&"x".repeat(MAX_KEY_LEN)), &caller, "POST /x", &body).unwrap().is_some());
    }
}
