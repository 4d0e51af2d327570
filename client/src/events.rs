//! The WebSocket side: [`Events`], one connection to `/v1/ws` carrying any number of subscriptions, whose frames
//! arrive as typed [`ServerFrame`]s; [`Subscribe`], a subscription's topic, key and options; and [`TopicState`],
//! which folds one topic's full snapshots and patches into its current state.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{ClientError, FoldError};
use crate::types::{apply_patch, ClientFrame, ServerFrame, SessionKey, TaskKey, TopicKey, TopicName, TopicSnapshot};
use crate::{Client, Result};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One subscription: a topic, its key and the subscribe frame's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub topic: TopicName,
    pub key: Option<TopicKey>,
    pub after: Option<u64>,
    pub patches: bool,
    /// Connect params for the topic's actor (JSON, at most 4 KiB).
    pub params: Option<Value>,
}

impl Subscribe {
    fn new(topic: TopicName, key: Option<TopicKey>) -> Self {
        Subscribe { topic, key, after: None, patches: false, params: None }
    }

    /// The caller's own `app` snapshot.
    pub fn app() -> Self {
        Self::new(TopicName::App, None)
    }

    pub fn organization(org: &str) -> Self {
        Self::new(TopicName::Organization, Some(TopicKey::org(org)))
    }

    /// The task detail with the caller's overlay.
    pub fn task(task: &TaskKey) -> Self {
        Self::new(TopicName::Task, Some(TopicKey::task(&task.org, &task.repo, &task.task)))
    }

    pub fn session(s: &SessionKey) -> Self {
        Self::new(TopicName::Session, Some(TopicKey::session(&s.org, &s.repo, &s.task, &s.session)))
    }

    /// The task's sandbox processes.
    pub fn processes(task: &TaskKey) -> Self {
        Self::new(TopicName::SandboxProcesses, Some(TopicKey::task(&task.org, &task.repo, &task.task)))
    }

    /// Only snapshots newer than `version` (e.g. a create reply's `sessionVersion`).
    pub fn after(mut self, version: u64) -> Self {
        self.after = Some(version);
        self
    }

    /// Changes as `{topic}Patched` frames after the first full snapshot (fold them with [`TopicState`]).
    pub fn patches(mut self) -> Self {
        self.patches = true;
        self
    }

    /// Connect params for the topic's actor.
    pub fn params(mut self, params: Value) -> Self {
        self.params = Some(params);
        self
    }

    fn frame(&self) -> ClientFrame {
        ClientFrame::Subscribe {
            topic: self.topic,
            key: self.key.clone(),
            after: self.after,
            patches: self.patches.then_some(true),
            params: self.params.clone(),
        }
    }
}

/// A WebSocket connection to `/v1/ws`, authenticated with the client's token.
pub struct Events {
    socket: Socket,
}

impl Client {
    /// Opens the WebSocket (401 as an [`crate::ApiError`] without a valid session). `ws://` only: this build has no
    /// TLS for WebSockets.
    pub async fn events(&self) -> Result<Events> {
        let mut req = self.ws_url().into_client_request()?;
        if let Some(token) = self.token() {
            let value = format!("Bearer {token}").parse().map_err(|e| {
                ClientError::WebSocket(Box::new(tokio_tungstenite::tungstenite::Error::HttpFormat(
                    tokio_tungstenite::tungstenite::http::Error::from(e),
                )))
            })?;
            req.headers_mut().insert("authorization", value);
        }
        let (socket, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Events { socket })
    }

    /// Opens the WebSocket and subscribes to one topic.
    pub async fn subscribe(&self, sub: Subscribe) -> Result<Events> {
        let mut events = self.events().await?;
        events.subscribe(&sub).await?;
        Ok(events)
    }
}

impl Events {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        let text = serde_json::to_string(frame).map_err(|source| ClientError::Frame { text: String::new(), source })?;
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Subscribes (again: the current snapshot is sent again).
    pub async fn subscribe(&mut self, sub: &Subscribe) -> Result<()> {
        self.send(&sub.frame()).await
    }

    pub async fn unsubscribe(&mut self, topic: TopicName, key: Option<TopicKey>) -> Result<()> {
        self.send(&ClientFrame::Unsubscribe { topic, key }).await
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.send(&ClientFrame::Ping).await
    }

    /// The next frame from the server; `None` once the connection closed. WebSocket pings are answered by the
    /// library; a text frame that is not a documented [`ServerFrame`] is an error (the server and this client
    /// disagree).
    pub async fn next(&mut self) -> Result<Option<ServerFrame>> {
        while let Some(msg) = self.socket.next().await {
            match msg? {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|source| ClientError::Frame { text: text.as_str().to_owned(), source });
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Closes the connection.
    pub async fn close(mut self) -> Result<()> {
        self.socket.close(None).await?;
        Ok(())
    }
}

/// One topic's current state, folded from its frames: a `{topic}Updated` replaces it, a `{topic}Patched` whose
/// `base` is the version held applies its operations (`foundry::runtime::patch`, the server's own), anything else is
/// [`FoldError::LostTrack`]. The state is kept as JSON and read as `S` on demand ([`TopicState::snapshot`]): the
/// same document a `GET` of the topic answers at that version.
#[derive(Debug, Clone)]
pub struct TopicState<S> {
    key: Option<TopicKey>,
    version: Option<u64>,
    doc: Value,
    typed: Option<S>,
}

impl<S: TopicSnapshot> Default for TopicState<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: TopicSnapshot> TopicState<S> {
    /// A state that takes every frame of `S`'s topic (one subscription of that topic on the connection).
    pub fn new() -> Self {
        TopicState { key: None, version: None, doc: Value::Null, typed: None }
    }

    /// A state that takes only the frames of `S`'s topic with this key.
    pub fn for_key(key: TopicKey) -> Self {
        TopicState { key: Some(key), ..Self::new() }
    }

    /// Folds `frame` in: `Ok(true)` if it changed this state, `Ok(false)` if it is about something else.
    pub fn apply(&mut self, frame: &ServerFrame) -> Result<bool, FoldError> {
        if frame.topic() != Some(S::TOPIC) || (self.key.is_some() && frame.key() != self.key.as_ref()) {
            return Ok(false);
        }
        let Some(version) = frame.version() else { return Ok(false) };
        if let Some((base, ops)) = frame.patch() {
            if self.version != Some(base) {
                return Err(FoldError::LostTrack { held: self.version, base });
            }
            // The operations apply to a copy, so a patch that does not fit leaves the state as it was.
            let mut doc = self.doc.clone();
            apply_patch(&mut doc, ops)?;
            self.doc = doc;
        } else if let Some(snapshot) = frame.snapshot_json() {
            self.doc = snapshot?;
        }
        self.version = Some(version);
        self.typed = None;
        Ok(true)
    }

    /// The version held (`None` before the first snapshot).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The state as JSON (`null` before the first snapshot).
    pub fn json(&self) -> &Value {
        &self.doc
    }

    /// The state as its type (`None` before the first snapshot); read from the JSON once per change.
    pub fn snapshot(&mut self) -> Result<Option<&S>, FoldError> {
        if self.version.is_none() {
            return Ok(None);
        }
        if self.typed.is_none() {
            self.typed = Some(S::deserialize(&self.doc)?);
        }
        Ok(self.typed.as_ref())
    }
}
