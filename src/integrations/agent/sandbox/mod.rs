//! The sandbox-agent backend: runs turns through a sandbox-agent server's HTTP API.
//!
//! - `GET /v1/health`; `GET /v1/agents?config=true` for the catalog (models, modes, thought levels, and the ids of
//!   the config options that select them).
//! - `POST /v1/acp/{server}` takes one ACP JSON-RPC envelope and returns its answer (`session/prompt` returns when
//!   the turn ends). Only the first POST, `initialize`, names the agent (`?agent=`), which creates the ACP server:
//!   a later request to a server the sandbox-agent no longer knows (it restarted) is then refused instead of
//!   silently reaching a new, uninitialised one.
//! - `GET /v1/acp/{server}` streams every envelope of that server as server-sent events, numbered (`id:`), from
//!   after `Last-Event-ID`. Turn output (`session/update` notifications) becomes [`AgentEvent`]s; the answer to a
//!   request appears there too, after everything the request produced, which is how a turn knows where it ends.
//!
//! Continuity is in the checkpoint state ([`AgentEvent::Checkpoint`], see `AgentState`) that the session commits with
//! the events before it and hands back as [`TurnRequest::resume`]: the ACP server (its id has 128 random bits, so
//! two installs sharing one sandbox-agent never share a transcript), the agent session, the stream cursor and the
//! settings applied. A turn therefore needs nothing in memory: after a foundry restart it reopens the stream after
//! the committed cursor and skips whatever is left there (a cut turn's uncommitted output, a cancelled turn's tail)
//! up to an answer it asked for; after a sandbox-agent restart it opens a new agent session, loaded with
//! `session/load` if the agent supports it, else primed with the conversation in one hidden prompt.
//!
//! Steer is delivered as a follow-up prompt within the same turn (ACP has no steer method); interrupt sends
//! `session/cancel`, which the next turn of that session waits for before it prompts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{AgentBackend, AgentEvent, HistoryItem, TurnEnd, TurnRequest};

mod acp;
mod catalog;
mod sse;

use acp::{is_answer, map_envelope, permission_answer};
use catalog::parse_agent;
pub use catalog::{CatalogAgent, CatalogOption, CatalogSetting};
use sse::{SseBuffer, SseStream};

/// Failures talking to the sandbox-agent server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox-agent unreachable: {0}")]
    Unreachable(String),
    #[error("sandbox-agent answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("sandbox-agent agent error: {0}")]
    Rpc(String),
    #[error("unexpected answer from sandbox-agent: {0}")]
    Protocol(String),
}

impl SandboxError {
    /// Whether the ACP server or the agent session is gone (the sandbox-agent or the agent restarted): a new agent
    /// session is needed, not a retry.
    pub fn is_gone(&self) -> bool {
        match self {
            SandboxError::Status { status: 404, .. } => true,
            // A POST without `?agent=` to a server id the sandbox-agent does not know.
            SandboxError::Status { status: 400, body } => body.contains("missing required 'agent'"),
            SandboxError::Rpc(message) => {
                let m = message.to_ascii_lowercase();
                m.contains("session not found") || m.contains("session_not_found")
            }
            _ => false,
        }
    }
}

/// What this backend saves per conversation: the `state` of its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct AgentState {
    /// The ACP server id: new (random) for every agent session opened.
    server: String,
    /// The agent's session on that server.
    session: String,
    /// The last stream event id consumed: forwarded and committed with this state, or deliberately skipped.
    cursor: u64,
    /// The directory the agent session was opened in.
    #[serde(default)]
    cwd: String,
    /// The agent's values last applied to the agent session (none: the agent's defaults).
    #[serde(default)]
    applied: Settings,
    /// How many agent sessions this conversation has had (1 for its first).
    #[serde(default)]
    generation: u64,
}

/// Agent values of the three settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Settings {
    model: Option<String>,
    mode: Option<String>,
    thought_level: Option<String>,
}

/// The settings a turn wants, in the agent's values, with the config option ids that set them (`None`: the agent
/// does not offer that setting, or nothing like the session's value, so it is left alone).
#[derive(Debug, Clone, Default, PartialEq)]
struct Wanted {
    model: Option<(String, String)>,
    mode: Option<String>,
    thought_level: Option<(String, String)>,
}

impl Wanted {
    fn of(catalog: Option<&CatalogAgent>, request: &TurnRequest) -> Wanted {
        let Some(c) = catalog else { return Wanted::default() };
        let config =
            |category: &str, value: &str| c.setting(category).and_then(|s| s.pick(value).map(|v| (s.id.clone(), v)));
        Wanted {
            model: config("model", &request.model),
            mode: c.setting("mode").and_then(|s| s.pick(&request.mode)),
            thought_level: config("thought_level", &request.thought_level),
        }
    }
}

/// An open conversation: its state and its event stream (read from `state.cursor`).
struct Conversation {
    state: AgentState,
    stream: SseStream,
}

/// Why a turn stops early.
enum Stop {
    /// The session no longer listens (its receiver is gone): end quietly.
    Closed,
    Failed(String),
}

impl From<SandboxError> for Stop {
    fn from(e: SandboxError) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// How a prompt failed.
enum PromptError {
    /// The server is gone; `forwarded` says whether any of the prompt's output already reached the session.
    Gone {
        forwarded: bool,
        error: SandboxError,
    },
    Stop(Stop),
}

impl From<Stop> for PromptError {
    fn from(s: Stop) -> Self {
        PromptError::Stop(s)
    }
}

/// How long a turn waits, after its prompt was answered, for the answer to show on the stream.
const ANSWER_ON_STREAM: Duration = Duration::from_secs(5);
/// How long a turn waits for the stream to catch up with its own marker request before it prompts.
const SKIP_LIMIT: Duration = Duration::from_secs(10);
/// How long a quiet stream counts as caught up, when there is no marker to wait for.
const QUIET: Duration = Duration::from_millis(250);
/// The most transcript text a new agent session is primed with (the latest messages are kept).
const PRIMING_LIMIT: usize = 100_000;

struct Inner {
    base: String,
    agent: String,
    client: reqwest::Client,
    /// JSON-RPC ids: seeded from the clock so that ids of requests sent by an earlier process (whose answers may still
    /// be in a stream) are never reused.
    next_id: AtomicU64,
    /// This agent's catalog entry, as last fetched.
    catalog: Mutex<Option<CatalogAgent>>,
    /// `session/cancel` notices still being sent, per ACP server: the next turn there waits for its notice, so a
    /// late cancel never stops the new prompt.
    cancels: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// The same agent on the servers of tasks that have their own, by URL.
    others: Mutex<HashMap<String, SandboxAgent>>,
}

/// A sandbox-agent server reached over HTTP. Cheap to clone.
#[derive(Clone)]
pub struct SandboxAgent {
    inner: Arc<Inner>,
}

impl SandboxAgent {
    /// `base_url` like `http://127.0.0.1:2468`; `agent` the server's agent id (`mock`, `claude`, `codex`, ...).
    pub fn new(base_url: &str, agent: &str) -> Self {
        let client = crate::integrations::http_client_builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        SandboxAgent {
            inner: Arc::new(Inner {
                base: base_url.trim_end_matches('/').to_owned(),
                agent: agent.to_owned(),
                client,
                // 1024 ids per millisecond, and still below 2^53 (exact in JavaScript agents) for two centuries.
                next_id: AtomicU64::new(now_ms.saturating_mul(1024)),
                catalog: Mutex::new(None),
                cancels: Mutex::new(HashMap::new()),
                others: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same agent on another server (a task's own sandbox), one client per server for the process's life.
    fn for_endpoint(&self, url: &str) -> SandboxAgent {
        let url = url.trim_end_matches('/');
        let mut others = self.inner.others.lock().unwrap_or_else(|p| p.into_inner());
        others.entry(url.to_owned()).or_insert_with(|| SandboxAgent::new(url, &self.inner.agent)).clone()
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<(), SandboxError> {
        let body = self.get_json("/v1/health").await?;
        match body["status"].as_str() {
            Some("ok") => Ok(()),
            _ => Err(SandboxError::Protocol(format!("health: {body}"))),
        }
    }

    /// The agents, models, modes and thought levels the server offers (`GET /v1/agents?config=true`).
    pub async fn catalog(&self) -> Result<Vec<CatalogAgent>, SandboxError> {
        let body = self.get_json("/v1/agents?config=true").await?;
        let agents = body["agents"].as_array().ok_or_else(|| SandboxError::Protocol("no agents array".into()))?;
        Ok(agents.iter().map(parse_agent).collect())
    }

    /// This backend's agent in the catalog: fetched again if `refresh` or never fetched; the last one fetched if the
    /// server cannot say now (settings are then left as they are).
    async fn agent_catalog(&self, refresh: bool) -> Option<CatalogAgent> {
        let cached = self.inner.catalog.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if cached.is_some() && !refresh {
            return cached;
        }
        match self.catalog().await {
            Ok(agents) => {
                let mine = agents.into_iter().find(|a| a.id == self.inner.agent);
                *self.inner.catalog.lock().unwrap_or_else(|p| p.into_inner()) = mine.clone();
                mine
            }
            Err(e) => {
                tracing::warn!(error = %e, "sandbox-agent catalog unavailable; agent settings left as they are");
                cached
            }
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value, SandboxError> {
        let res = self
            .inner
            .client
            .get(format!("{}{path}", self.inner.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
        read_json(res).await
    }

    fn next_rpc_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One JSON-RPC request; returns its `result`. `create_as` names the agent: only for the request that creates
    /// the server (see the module docs).
    async fn call(
        &self,
        server: &str,
        id: u64,
        method: &str,
        params: Value,
        create_as: Option<&str>,
    ) -> Result<Value, SandboxError> {
        let envelope = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let mut url = format!("{}/v1/acp/{server}", self.inner.base);
        if let Some(agent) = create_as {
            url = format!("{url}?agent={agent}");
        }
        let res = self
            .inner
            .client
            .post(url)
            .json(&envelope)
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
        let body = read_json(res).await?;
        if let Some(err) = body.get("error") {
            return Err(SandboxError::Rpc(err.to_string()));
        }
        Ok(body.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn rpc(&self, server: &str, method: &str, params: Value) -> Result<Value, SandboxError> {
        self.call(server, self.next_rpc_id(), method, params, None).await
    }

    /// Answers a request the agent sent us (a JSON-RPC response envelope).
    async fn respond(&self, server: &str, envelope: Value) -> Result<(), SandboxError> {
        self.post_envelope(server, &envelope, Duration::from_secs(10)).await
    }

    /// A notification (no reply expected, e.g. `session/cancel`).
    async fn notify(&self, server: &str, method: &str, params: Value) -> Result<(), SandboxError> {
        let envelope = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        self.post_envelope(server, &envelope, Duration::from_secs(5)).await
    }

    /// Posts an envelope that gets no JSON-RPC answer of its own (a notification or a response).
    async fn post_envelope(&self, server: &str, envelope: &Value, timeout: Duration) -> Result<(), SandboxError> {
        let res = self
            .inner
            .client
            .post(format!("{}/v1/acp/{server}", self.inner.base))
            .json(envelope)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(SandboxError::Status { status: res.status().as_u16(), body: res.text().await.unwrap_or_default() })
        }
    }

    /// Waits (bounded) for a `session/cancel` still being sent to `server`.
    async fn settle_cancel(&self, server: &str) {
        let pending = self.inner.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(server);
        if let Some(handle) = pending {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
    }

    async fn open_stream(&self, server: &str, after: u64) -> Result<SseStream, SandboxError> {
        let res = self
            .inner
            .client
            .get(format!("{}/v1/acp/{server}", self.inner.base))
            .header("accept", "text/event-stream")
            .header("last-event-id", after.to_string())
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(SandboxError::Status {
                status: res.status().as_u16(),
                body: res.text().await.unwrap_or_default(),
            });
        }
        Ok(SseStream { res, buf: SseBuffer::default(), after })
    }

    async fn turn(
        self,
        request: TurnRequest,
        events: mpsc::Sender<AgentEvent>,
        steer: mpsc::UnboundedReceiver<String>,
    ) -> TurnEnd {
        let mut guard = CancelOnDrop { agent: self.clone(), target: None };
        let result = self.run(&request, &events, steer, &mut guard).await;
        // A failed or abandoned turn may still be running in the agent: the guard cancels it (and the next turn
        // waits for that). A completed one is over, and a cancel could only stop the next one.
        match result {
            Ok(()) => {
                guard.target = None;
                TurnEnd::Completed
            }
            Err(Stop::Closed) => TurnEnd::Completed,
            Err(Stop::Failed(why)) => TurnEnd::Failed(why),
        }
    }

    async fn run(
        &self,
        request: &TurnRequest,
        events: &mpsc::Sender<AgentEvent>,
        mut steer: mpsc::UnboundedReceiver<String>,
        guard: &mut CancelOnDrop,
    ) -> Result<(), Stop> {
        let previous = request.resume.clone().and_then(|v| serde_json::from_value::<AgentState>(v).ok());
        let mut conversation = self.attach(request, previous).await?;
        guard.target = Some((conversation.state.server.clone(), conversation.state.session.clone()));
        checkpoint(events, &conversation.state).await?;
        let mut prompts = VecDeque::from([request.prompt.clone()]);
        let mut reopened = false;
        while let Some(text) = prompts.pop_front() {
            match self.prompt(&mut conversation, &text, events, &mut steer, &mut prompts).await {
                Ok(()) => {}
                // The server went away between the turn's start and its prompt: once, and only if nothing of the
                // prompt was shown yet, continue on a new agent session.
                Err(PromptError::Gone { forwarded: false, error }) if !reopened => {
                    tracing::info!(error = %error, "sandbox-agent session gone; opening a new one");
                    reopened = true;
                    conversation = self.open(request, Some(conversation.state)).await?;
                    guard.target = Some((conversation.state.server.clone(), conversation.state.session.clone()));
                    checkpoint(events, &conversation.state).await?;
                    prompts.push_front(text);
                }
                Err(PromptError::Gone { error, .. }) => return Err(error.into()),
                Err(PromptError::Stop(stop)) => return Err(stop),
            }
        }
        Ok(())
    }

    /// The conversation to prompt in: the saved one if its server still has it (and it is in the requested
    /// directory), else a new agent session. Either way with the wanted settings applied and the stream caught up.
    async fn attach(&self, request: &TurnRequest, previous: Option<AgentState>) -> Result<Conversation, Stop> {
        let Some(prev) = previous else { return self.open(request, None).await };
        if request.cwd.as_ref().is_some_and(|cwd| *cwd != prev.cwd) {
            // The task's workspace moved: the agent session must work there.
            return self.open(request, Some(prev)).await;
        }
        self.settle_cancel(&prev.server).await;
        let stream = match self.open_stream(&prev.server, prev.cursor).await {
            Ok(stream) => stream,
            Err(e) if e.is_gone() => return self.open(request, Some(prev)).await,
            Err(e) => return Err(e.into()),
        };
        let mut conversation = Conversation { state: prev, stream };
        let wanted = Wanted::of(self.agent_catalog(false).await.as_ref(), request);
        match self.prepare(&mut conversation, &wanted, None).await {
            Ok(()) => Ok(conversation),
            Err(e) if e.is_gone() => self.open(request, Some(conversation.state)).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a new agent session for the conversation (after `previous`, if it had one): a new ACP server, loaded
    /// with the previous agent session if the agent can, else primed with the conversation so far.
    async fn open(&self, request: &TurnRequest, previous: Option<AgentState>) -> Result<Conversation, Stop> {
        let server = new_server_id(&request.session_id)?;
        let init = json!({ "protocolVersion": 1, "clientCapabilities": {} });
        let agent = self.inner.agent.clone();
        let initialized = self.call(&server, self.next_rpc_id(), "initialize", init, Some(&agent)).await?;
        let can_load = initialized["agentCapabilities"]["loadSession"].as_bool() == Some(true);
        let stream = self.open_stream(&server, 0).await?;
        let cwd = match &request.cwd {
            Some(cwd) => cwd.clone(),
            None => scratch_dir(&server),
        };
        let mut loaded = None;
        if let Some(prev) = previous.as_ref().filter(|_| can_load) {
            let params = json!({ "sessionId": prev.session, "cwd": cwd, "mcpServers": [] });
            match self.rpc(&server, "session/load", params).await {
                Ok(_) => loaded = Some(prev.session.clone()),
                Err(e) => tracing::info!(error = %e, "session/load failed; priming a new agent session instead"),
            }
        }
        let session = match loaded.clone() {
            Some(session) => session,
            None => {
                let created = self.rpc(&server, "session/new", json!({ "cwd": cwd, "mcpServers": [] })).await?;
                // Real agents name their session; the mock agent echoes and has none: use the server id.
                created["sessionId"].as_str().unwrap_or(&server).to_owned()
            }
        };
        let priming = if loaded.is_some() {
            None
        } else {
            let history = request.load_history().await.map_err(|e| {
                Stop::Failed(format!("could not load the conversation to continue it in a new agent session: {e}"))
            })?;
            (!history.is_empty()).then(|| priming_text(&history))
        };
        let generation = previous.as_ref().map_or(0, |p| p.generation) + 1;
        let state = AgentState { server, session, cursor: 0, cwd, applied: Settings::default(), generation };
        let mut conversation = Conversation { state, stream };
        let wanted = Wanted::of(self.agent_catalog(true).await.as_ref(), request);
        self.prepare(&mut conversation, &wanted, priming).await?;
        Ok(conversation)
    }

    /// Applies the settings that differ from what the agent session has, sends the priming prompt if any, and skips
    /// the stream past everything so far: none of it is this turn's output.
    async fn prepare(
        &self,
        conversation: &mut Conversation,
        wanted: &Wanted,
        priming: Option<String>,
    ) -> Result<(), SandboxError> {
        let server = conversation.state.server.clone();
        let session = conversation.state.session.clone();
        let applied = &mut conversation.state.applied;
        if let Some((config, value)) = &wanted.model {
            if applied.model.as_ref() != Some(value) {
                let params = json!({ "sessionId": session, "configId": config, "value": value });
                self.rpc(&server, "session/set_config_option", params).await?;
                applied.model = Some(value.clone());
            }
        }
        if let Some(mode) = &wanted.mode {
            if applied.mode.as_ref() != Some(mode) {
                self.rpc(&server, "session/set_mode", json!({ "sessionId": session, "modeId": mode })).await?;
                applied.mode = Some(mode.clone());
            }
        }
        if let Some((config, value)) = &wanted.thought_level {
            if applied.thought_level.as_ref() != Some(value) {
                let params = json!({ "sessionId": session, "configId": config, "value": value });
                self.rpc(&server, "session/set_config_option", params).await?;
                applied.thought_level = Some(value.clone());
            }
        }
        if let Some(text) = priming {
            let params = json!({ "sessionId": session, "prompt": [{ "type": "text", "text": text }] });
            self.rpc(&server, "session/prompt", params).await?;
        }
        // The answer to this request marks "now" on the stream. An ACP extension method: an agent that does not
        // know it still answers (with an error), and that answer is what counts.
        let marker = self.next_rpc_id();
        let sync = self.call(&server, marker, "_foundry/sync", json!({}), None);
        let answer = tokio::time::timeout(SKIP_LIMIT, sync)
            .await
            .unwrap_or_else(|_| Err(SandboxError::Unreachable("no answer to _foundry/sync".into())));
        match answer {
            Ok(_) | Err(SandboxError::Rpc(_)) => skip_until(&mut conversation.stream, Some(marker)).await,
            Err(e) if e.is_gone() => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no sync answer; skipping the stream until it is quiet");
                skip_until(&mut conversation.stream, None).await;
            }
        }
        conversation.state.cursor = conversation.stream.after;
        Ok(())
    }

    /// Sends one prompt and forwards its output until its answer, taking steer meanwhile (queued into `prompts`).
    async fn prompt(
        &self,
        conversation: &mut Conversation,
        text: &str,
        events: &mpsc::Sender<AgentEvent>,
        steer: &mut mpsc::UnboundedReceiver<String>,
        prompts: &mut VecDeque<String>,
    ) -> Result<(), PromptError> {
        let server = conversation.state.server.clone();
        let id = self.next_rpc_id();
        let params = json!({ "sessionId": conversation.state.session, "prompt": [{ "type": "text", "text": text }] });
        let post = self.call(&server, id, "session/prompt", params, None);
        tokio::pin!(post);
        let mut answered = false;
        let mut answer_seen = false;
        let mut forwarded = false;
        let mut stream_reopened = false;
        while !(answered && answer_seen) {
            tokio::select! {
                result = &mut post, if !answered => match result {
                    Ok(_) => answered = true,
                    Err(error) if error.is_gone() => return Err(PromptError::Gone { forwarded, error }),
                    Err(e) => return Err(Stop::from(e).into()),
                },
                next = conversation.stream.next(), if !answer_seen => match next {
                    Ok(Some(event)) => {
                        let envelope = event.envelope();
                        if envelope.as_ref().is_some_and(|e| is_answer(e, id)) {
                            answer_seen = true;
                        } else if let Some(answer) = envelope.as_ref().and_then(permission_answer) {
                            // The workspace is the task's own sandbox: the agent may act there (as the original
                            // runs claude in acceptEdits and codex in full-access). Unanswered, the turn would hang.
                            if let Err(e) = self.respond(&server, answer).await {
                                return Err(Stop::Failed(format!("could not answer the agent's permission request: {e}")).into());
                            }
                        } else if let Some(envelope) = envelope {
                            for e in map_envelope(&envelope) {
                                forwarded = true;
                                events.send(e).await.map_err(|_| Stop::Closed)?;
                            }
                        }
                        conversation.state.cursor = conversation.stream.after;
                        if !conversation.stream.has_buffered() {
                            checkpoint(events, &conversation.state).await?;
                        }
                    }
                    // Answered already: only the answer's own echo is missing.
                    Ok(None) | Err(_) if answered => break,
                    Ok(None) | Err(_) if !stream_reopened => {
                        // The stream broke mid-turn: pick it up again after the last event read.
                        stream_reopened = true;
                        conversation.stream = self
                            .open_stream(&server, conversation.state.cursor)
                            .await
                            .map_err(|e| Stop::Failed(format!("the agent's event stream broke: {e}")))?;
                    }
                    Ok(None) | Err(_) => {
                        return Err(Stop::Failed("the agent's event stream broke twice in one turn".into()).into());
                    }
                },
                Some(guidance) = steer.recv() => {
                    let text = format!("[steer: {guidance}] ");
                    events.send(AgentEvent::TextDelta { text }).await.map_err(|_| Stop::Closed)?;
                    prompts.push_back(format!("Guidance for the work in progress: {guidance}"));
                }
                _ = tokio::time::sleep(ANSWER_ON_STREAM), if answered => {
                    tracing::warn!(server = %server, "the prompt's answer never showed on the stream");
                    break;
                }
            }
        }
        checkpoint(events, &conversation.state).await?;
        Ok(())
    }
}

/// Sends the state as a checkpoint after the events before it.
async fn checkpoint(events: &mpsc::Sender<AgentEvent>, state: &AgentState) -> Result<(), Stop> {
    let state = serde_json::to_value(state).map_err(|e| Stop::Failed(e.to_string()))?;
    events.send(AgentEvent::Checkpoint { state }).await.map_err(|_| Stop::Closed)
}

/// Reads the stream past the answer to request `marker` (or, without one, until it is quiet), dropping what it
/// reads. Bounded: a stream that never shows the marker costs [`SKIP_LIMIT`], not the turn.
async fn skip_until(stream: &mut SseStream, marker: Option<u64>) {
    let deadline = tokio::time::Instant::now() + SKIP_LIMIT;
    loop {
        let wait = match marker {
            Some(_) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(Ok(Some(event))) => {
                if let (Some(marker), Some(envelope)) = (marker, event.envelope()) {
                    if is_answer(&envelope, marker) {
                        return;
                    }
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => {
                if marker.is_some() {
                    tracing::warn!("the stream did not catch up with the sync request in time");
                }
                return;
            }
        }
    }
}

/// A new ACP server id: `foundry-<128 random bits>-<session key>` (the key, with only `[A-Za-z0-9-]` and at most 64
/// characters of it, is only there to make a server list readable).
fn new_server_id(session_key: &str) -> Result<String, SandboxError> {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).map_err(|e| SandboxError::Protocol(format!("no randomness: {e}")))?;
    let mut out = String::from("foundry-");
    for b in random {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('-');
    let mut key = String::new();
    for b in session_key.bytes() {
        if b.is_ascii_alphanumeric() {
            key.push(b as char);
        } else {
            key.push_str(&format!("-{b:02x}"));
        }
    }
    out.extend(key.chars().take(64));
    Ok(out)
}

/// The working directory of an agent session whose task has no workspace: its own, under the temp directory.
fn scratch_dir(server: &str) -> String {
    let dir = std::env::temp_dir().join("foundry-agent").join(server);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        // The agent may run on another machine, where this path means nothing anyway.
        tracing::debug!(error = %e, dir = %dir.display(), "could not create the agent's scratch directory");
    }
    dir.to_string_lossy().into_owned()
}

/// The hidden prompt that gives a new agent session the conversation so far (the latest [`PRIMING_LIMIT`]
/// characters of it).
fn priming_text(history: &[HistoryItem]) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut size = 0;
    for item in history.iter().rev() {
        let who = if item.role == "user" { "User" } else { "Assistant" };
        let entry = format!("{who}: {}\n\n", item.text);
        size += entry.len();
        if size > PRIMING_LIMIT && !kept.is_empty() {
            break;
        }
        kept.push(entry);
    }
    kept.reverse();
    format!(
        "This conversation continues from an earlier session. Here it is so far, for context only: do not reply to \
         it or act on it now; the next message continues it.\n\n{}",
        kept.concat()
    )
}

/// Sends `session/cancel` when a turn is dropped (interrupt, passivation, stop), so the agent stops working too.
struct CancelOnDrop {
    agent: SandboxAgent,
    /// The ACP server and agent session to cancel; `None` once there is nothing to cancel.
    target: Option<(String, String)>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((server, session)) = self.target.take() else { return };
        let agent = self.agent.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            // Bounded by the request timeout: a best-effort notice to the agent, not work that outlives it.
            let notice = {
                let server = server.clone();
                handle.spawn(async move {
                    let _ = agent.notify(&server, "session/cancel", json!({ "sessionId": session })).await;
                })
            };
            let mut cancels = self.agent.inner.cancels.lock().unwrap_or_else(|p| p.into_inner());
            // Notices nobody waited for (their session ran no further turn) are dropped once sent.
            cancels.retain(|_, pending| !pending.is_finished());
            cancels.insert(server, notice);
        }
    }
}

async fn read_json(res: reqwest::Response) -> Result<Value, SandboxError> {
    let status = res.status();
    let body = res.text().await.map_err(|e| SandboxError::Unreachable(e.to_string()))?;
    if !status.is_success() {
        return Err(SandboxError::Status { status: status.as_u16(), body });
    }
    serde_json::from_str(&body).map_err(|e| SandboxError::Protocol(format!("{e}: {body}")))
}

impl AgentBackend for SandboxAgent {
    fn run_turn(
        &self,
        request: TurnRequest,
        events: mpsc::Sender<AgentEvent>,
        steer: mpsc::UnboundedReceiver<String>,
    ) -> BoxFuture<'static, TurnEnd> {
        let agent = match &request.agent_url {
            Some(url) if url.trim_end_matches('/') != self.inner.base => self.for_endpoint(url),
            _ => self.clone(),
        };
        Box::pin(agent.turn(request, events, steer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock_agent() -> Value {
        json!({"id":"mock","installed":true,"configOptions":[
            {"category":"model","id":"model","currentValue":"mock","options":[
                {"value":"mock","name":"Mock"},{"value":"mock-fast","name":"Mock Fast"}]},
            {"category":"mode","id":"mode","currentValue":"normal","options":[
                {"value":"normal","name":"Normal"},{"value":"plan","name":"Plan"}]},
            {"category":"thought_level","id":"thought_level","currentValue":"low","options":[
                {"value":"low","name":"Low"},{"value":"medium","name":"Medium"},{"value":"high","name":"High"}]}]})
    }

    #[test]
    fn foundry_settings_map_to_the_agents_values() {
        let mock = parse_agent(&mock_agent());
        let request = |model: &str, mode: &str, level: &str| TurnRequest {
            model: model.into(),
            mode: mode.into(),
            thought_level: level.into(),
            ..TurnRequest::default()
        };
        let wanted = Wanted::of(Some(&mock), &request("mock-fast", "default", "medium"));
        assert_eq!(wanted.model, Some(("model".into(), "mock-fast".into())));
        assert_eq!(wanted.mode.as_deref(), Some("normal"), "default is the agent's own default");
        assert_eq!(wanted.thought_level, Some(("thought_level".into(), "medium".into())));
        // Values the agent does not offer are left alone; without a catalog nothing is set.
        let wanted = Wanted::of(Some(&mock), &request("gpt-5.3-codex", "full-access", "xhigh"));
        assert_eq!(wanted, Wanted::default());
        assert_eq!(Wanted::of(None, &request("mock", "plan", "low")), Wanted::default());
        let modes = |values: &[(&str, &str)]| CatalogSetting {
            id: "mode".into(),
            category: "mode".into(),
            current: None,
            options: values.iter().map(|(v, n)| CatalogOption { value: (*v).into(), name: (*n).into() }).collect(),
        };
        let claude = modes(&[("default", "Default"), ("acceptEdits", "Accept Edits"), ("plan", "Plan")]);
        assert_eq!(claude.pick("accept-edits").as_deref(), Some("acceptEdits"));
        let codex = modes(&[("read-only", "Read Only"), ("auto", "Default"), ("full-access", "Full Access")]);
        assert_eq!(codex.pick("default").as_deref(), Some("auto"));
        assert_eq!(codex.pick("full-access").as_deref(), Some("full-access"));
        assert_eq!(codex.pick("plan"), None);
    }

    #[test]
    fn state_round_trips_and_tolerates_older_shapes() {
        let state = AgentState {
            server: "foundry-ab-x".into(),
            session: "s".into(),
            cursor: 42,
            cwd: "/w".into(),
            applied: Settings { model: Some("mock-fast".into()), mode: None, thought_level: Some("low".into()) },
            generation: 2,
        };
        let value = serde_json::to_value(&state).unwrap();
        assert_eq!(serde_json::from_value::<AgentState>(value).unwrap(), state);
        let minimal: AgentState = serde_json::from_value(json!({"server":"a","session":"b","cursor":3})).unwrap();
        assert_eq!((minimal.cursor, minimal.generation, minimal.applied), (3, 0, Settings::default()));
        assert!(serde_json::from_value::<AgentState>(json!({"something":"else"})).is_err());
    }

    #[test]
    fn server_ids_are_random_per_agent_session() {
        let a = new_server_id("acme/web/t1/s1").unwrap();
        let b = new_server_id("acme/web/t1/s1").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("foundry-") && a.ends_with("acme-2fweb-2ft1-2fs1"), "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'), "{a}");
        let long = new_server_id(&"k".repeat(500)).unwrap();
        assert!(long.len() <= "foundry-".len() + 32 + 1 + 64, "{long}");
    }

    #[test]
    fn gone_servers_are_recognised() {
        let missing_agent = "{\"type\":\"urn:sandbox-agent:error:invalid_request\",\"detail\":\"invalid request: \
                             missing required 'agent' query parameter for first POST to /v1/acp/x\"}";
        assert!(SandboxError::Status { status: 400, body: missing_agent.into() }.is_gone());
        assert!(SandboxError::Status { status: 404, body: "session_not_found".into() }.is_gone());
        assert!(SandboxError::Rpc("{\"code\":-32002,\"message\":\"Session not found\"}".into()).is_gone());
        assert!(!SandboxError::Status { status: 400, body: "bad prompt".into() }.is_gone());
        assert!(!SandboxError::Unreachable("refused".into()).is_gone());
    }

    #[test]
    fn priming_keeps_the_latest_messages() {
        let item = |role: &str, text: &str| HistoryItem { role: role.into(), text: text.into() };
        let text = priming_text(&[item("user", "first"), item("agent", "echo: first")]);
        assert!(text.ends_with("User: first\n\nAssistant: echo: first\n\n"), "{text}");
        let big = "x".repeat(PRIMING_LIMIT);
        let text = priming_text(&[item("user", "old"), item("user", &big), item("user", "new")]);
        assert!(!text.contains("User: old") && text.contains("User: new"));
    }
}
