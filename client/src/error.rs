//! What a call can fail with: the server's refusal ([`ApiError`], parsed from its `{"error":{code,message}}` body),
//! or the client's own trouble reaching it, reading its answer or following a topic ([`ClientError`]).

use foundry::http::wire::PatchError;

/// A refusal by the server: its HTTP status and the stable `code` and `message` of its JSON error body
/// (docs/API.md, "Errors", lists the codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `Retry-After` in seconds (429, 503, `idempotency_in_progress`).
    pub retry_after: Option<u64>,
}

/// The body of every refusal.
#[derive(serde::Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Deserialize)]
pub(crate) struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// The refusal a non-2xx answer carries; an answer that is not the documented JSON error (a proxy's page, the
    /// HTTP parser's empty 400) keeps its status with the code `unexpected_answer` and the body as the message.
    pub(crate) fn from_answer(status: u16, retry_after: Option<u64>, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => ApiError { status, code: error.code, message: error.message, retry_after },
            Err(_) => ApiError {
                status,
                code: "unexpected_answer".into(),
                message: String::from_utf8_lossy(body).chars().take(500).collect(),
                retry_after,
            },
        }
    }
}

/// Why a topic's state cannot take a frame.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// A patch for another version than the one held: frames were lost (never expected; subscribe again).
    #[error("a patch from version {base} arrived while holding {held:?}")]
    LostTrack { held: Option<u64>, base: u64 },
    #[error("a patch does not apply: {0}")]
    Patch(#[from] PatchError),
    #[error("the snapshot does not read as its type: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A 2xx answer whose body is not the documented type: the server and this client disagree.
    #[error("the {status} answer of {what} does not read as its type: {source}")]
    Decode { what: String, status: u16, source: serde_json::Error },
    #[error("WebSocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// A text frame that is not a documented server frame.
    #[error("unexpected frame {text:?}: {source}")]
    Frame { text: String, source: serde_json::Error },
    #[error(transparent)]
    Fold(#[from] FoldError),
    #[error("invalid base URL {0:?}: it must start with http:// or https://")]
    BaseUrl(String),
}

impl ClientError {
    /// The server's refusal, if that is what this is.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The refusal's stable code (`None` for the client's own failures).
    pub fn code(&self) -> Option<&str> {
        self.api().map(|e| e.code.as_str())
    }

    /// The refusal's HTTP status.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error;
        match e {
            // Refused before the upgrade (401 without a session ...): the same JSON error as any route.
            Error::Http(res) => {
                let status = res.status().as_u16();
                ApiError::from_answer(status, None, res.body().as_deref().unwrap_or_default()).into()
            }
            e => ClientError::WebSocket(Box::new(e)),
        }
    }
}
