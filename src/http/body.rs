//! Request bodies: one strict JSON parser for every route, so that every route refuses the same things the same way.
//!
//! - The body must be `Content-Type: application/json` (or `application/<x>+json`): 415 `unsupported_media_type`
//!   otherwise. actix-web's own `Json` also takes `text/json` and can only widen its check, hence this extractor.
//! - At most [`MAX_JSON_BODY`](super::MAX_JSON_BODY) bytes: 413 `payload_too_large`.
//! - Not JSON: 400 `malformed_json`. Not an object, unknown fields (every body struct has
//!   `#[serde(deny_unknown_fields)]`), wrong types and missing fields: 400 `invalid_field`.
//!
//! [`Json`] requires a body; [`OptionalJson`] also takes an empty one (no bytes at all) as the type's default, and
//! [`NoBody`] is for routes that take nothing: empty or `{}`. A non-empty body is parsed the same way on all three.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

type BodyFuture<T> = Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>>;

/// A required JSON body.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A JSON body that may be absent (zero bytes): then `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T> OptionalJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// No body, or the empty object `{}` (a body with any field is refused like an unknown field).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Empty)]
pub struct NoBody {}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let bytes = read(&req, payload).await?;
            parse(&req, &bytes).map(Json)
        })
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let bytes = read(&req, payload).await?;
            if bytes.is_empty() {
                return Ok(OptionalJson(T::default()));
            }
            parse(&req, &bytes).map(OptionalJson)
        })
    }
}

impl FromRequest for NoBody {
    type Error = actix_web::Error;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = OptionalJson::<NoBody>::from_request(req, payload);
        Box::pin(async move { fut.await.map(OptionalJson::into_inner) })
    }
}

/// Whether `req` declares a JSON body.
fn is_json(req: &HttpRequest) -> bool {
    match req.mime_type() {
        Ok(Some(m)) => {
            m.type_() == actix_web::mime::APPLICATION
                && (m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON))
        }
        _ => false,
    }
}

async fn read(req: &HttpRequest, mut payload: Payload) -> Result<web::Bytes, actix_web::Error> {
    let limit = super::MAX_JSON_BODY;
    let fail = |e| super::error::json_error(e, req);
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = declared.filter(|&n| n > limit) {
        return Err(fail(JsonPayloadError::OverflowKnownLength { length, limit }));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e: PayloadError| fail(JsonPayloadError::Payload(e)))?;
        if body.len() + chunk.len() > limit {
            return Err(fail(JsonPayloadError::Overflow { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn parse<T: DeserializeOwned>(req: &HttpRequest, bytes: &[u8]) -> Result<T, actix_web::Error> {
    if !is_json(req) {
        return Err(super::error::json_error(JsonPayloadError::ContentType, req));
    }
    // Every body is an object: serde would also fill a struct from an array (`["x"]` as `{"prompt": "x"}`).
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(super::ApiError::bad_request("invalid_field", "the body must be a JSON object").into());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json reports some type mismatches as syntax errors (a number where an enum's string belongs says
        // "expected value"), so whether the body is well-formed JSON decides the code, not the error's category.
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            super::ApiError::bad_request("invalid_field", e.to_string()).into()
        } else {
            super::error::json_error(JsonPayloadError::Deserialize(e), req)
        }
    })
}
