//! The HTTP side: [`Client`] (base URL, session token, the shared connection pool), one request's plumbing (JSON
//! body out, status checked, JSON answer in) and [`Creating`], the request of a creating route, which may carry an
//! `Idempotency-Key`.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, ClientError};
use crate::Result;

/// A client of one foundry server, optionally signed in (`with_token`). Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http(s)://host[:port]`, without a trailing slash.
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: clients end up in logs.
        f.debug_struct("Client").field("base", &self.base).field("signed_in", &self.token.is_some()).finish()
    }
}

/// A successful answer with what the client may want besides its body.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub status: u16,
    /// `Idempotent-Replayed: true`: a retry under the same `Idempotency-Key`, answered with the first request's answer.
    pub replayed: bool,
    pub value: T,
}

impl Client {
    /// A client of the server at `base_url` (`http://127.0.0.1:8080`), not signed in. Redirects are not followed:
    /// the API answers none but the OAuth start, whose redirect is for a browser.
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        let http = foundry::integrations::http_client_builder().redirect(reqwest::redirect::Policy::none()).build()?;
        Self::with_http(http, base_url)
    }

    /// A client over an existing `reqwest::Client` (its pool, timeouts and proxy settings).
    pub fn with_http(http: reqwest::Client, base_url: impl Into<String>) -> Result<Self> {
        let base = base_url.into().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BaseUrl(base));
        }
        Ok(Client { http, base, token: None })
    }

    /// The same client, sending `token` (a session token from a sign-in) as `Authorization: Bearer`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The session token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn ws_url(&self) -> String {
        // http -> ws, https -> wss.
        format!("ws{}/v1/ws", &self.base[4..])
    }

    /// Sends one request: `body` as JSON, the token, the extra headers; a non-2xx answer is an [`ApiError`].
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).headers(headers);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let res = req.send().await?;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await?.to_vec();
        if !status.is_success() {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            return Err(ApiError::from_answer(status.as_u16(), retry_after, &bytes).into());
        }
        Ok((status, headers, bytes))
    }

    /// One JSON call answering `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        Ok(self.call_with(method, path, body, HeaderMap::new()).await?.value)
    }

    pub(crate) async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
    ) -> Result<Answer<T>> {
        let what = format!("{method} {path}");
        let (status, headers, bytes) = self.send(method, path, body, headers).await?;
        let value = decode(&what, status.as_u16(), &bytes)?;
        let replayed = headers.get("idempotent-replayed").is_some_and(|v| v.as_bytes() == b"true");
        Ok(Answer { status: status.as_u16(), replayed, value })
    }

    /// A call whose success has no body (204).
    pub(crate) async fn call_empty(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<()> {
        self.send(method, path, body, HeaderMap::new()).await.map(drop)
    }

    /// A creating call: sent when awaited, with an `Idempotency-Key` if one is set.
    pub(crate) fn creating<T: DeserializeOwned>(&self, path: String, body: Option<Vec<u8>>) -> Creating<'_, T> {
        Creating { client: self, path, body, key: None, answer: PhantomData }
    }
}

/// `body` as JSON bytes. Serialising the server's own request types cannot fail (plain structs of strings, numbers
/// and maps with string keys); were it to, the server would refuse the empty body with a clear error.
pub(crate) fn json(body: &impl Serialize) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(body).unwrap_or_default())
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, status: u16, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ClientError::Decode { what: what.to_owned(), status, source })
}

/// A path segment, percent-encoded (ids are restricted to `A-Z a-z 0-9 . _ -`, but a client must not be the one
/// to turn a stray `/` or `?` into another route).
pub(crate) fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The request of a creating route (`POST /v1/orgs`, `.../repos`, `.../members`, `.../tasks`, `T/sessions`,
/// `S/messages`, `T/processes`, `T/pull-request`): awaiting it sends it. With [`Creating::idempotency_key`], a retry
/// of the same request under the same key gets the first answer and creates nothing twice (docs/API.md, "Idempotent
/// creation"); [`Creating::send`] also says whether the answer was such a replay.
#[must_use = "a creating request does nothing until awaited"]
pub struct Creating<'a, T> {
    client: &'a Client,
    path: String,
    body: Option<Vec<u8>>,
    key: Option<String>,
    answer: PhantomData<fn() -> T>,
}

impl<'a, T: DeserializeOwned + 'a> Creating<'a, T> {
    /// Sends `Idempotency-Key: key` (1-200 printable ASCII characters; the server refuses others with 400
    /// `invalid_idempotency_key`).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends the request; the answer with its status and whether it was replayed.
    pub async fn send(self) -> Result<Answer<T>> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.key {
            // A key that is not a valid header value cannot be sent at all; the server's own refusal of a malformed
            // key is the clearer answer, so such a key is sent as one it refuses.
            let value = HeaderValue::from_str(key).unwrap_or_else(|_| HeaderValue::from_static(""));
            headers.insert("idempotency-key", value);
        }
        self.client.call_with(Method::POST, &self.path, self.body, headers).await
    }
}

impl<'a, T: DeserializeOwned + Send + 'a> IntoFuture for Creating<'a, T> {
    type Output = Result<T>;
    // `Send`, so that a creating call can run on a multi-threaded runtime's spawned task.
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.send().await.map(|a| a.value) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded_except_unreserved_bytes() {
        assert_eq!(seg("acme-1.x_y~"), "acme-1.x_y~");
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn base_urls_must_be_http_and_lose_their_trailing_slash() {
        let c = Client::new("http://127.0.0.1:9/").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
        assert_eq!(c.ws_url(), "ws://127.0.0.1:9/v1/ws");
        assert_eq!(Client::new("https://x.example").unwrap().ws_url(), "wss://x.example/v1/ws");
        assert!(matches!(Client::new("127.0.0.1:9"), Err(ClientError::BaseUrl(_))));
    }

    #[test]
    fn clients_and_their_calls_can_move_between_threads() {
        fn send<T: Send>(_: &T) {}
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let body = foundry::http::wire::CreateTaskBody { prompt: "p".into(), ..Default::default() };
        let repo = foundry::http::wire::RepoKey::new("a", "r");
        send(&client.create_task(&repo, &body).into_future());
        send(&client.me());
    }

    #[test]
    fn refusals_read_the_error_body_or_keep_what_came() {
        let e = ApiError::from_answer(409, Some(1), br#"{"error":{"code":"conflict","message":"exists"}}"#);
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str(), e.retry_after),
            (409, "conflict", "exists", Some(1))
        );
        let e = ApiError::from_answer(400, None, b"");
        assert_eq!((e.status, e.code.as_str()), (400, "unexpected_answer"));
    }
}
