//! The sandbox-agent backend: runs turns through a sandbox-agent server's HTTP API.
//!
//! - `GET /v1/health`; `GET /v1/agents?config=true` for the model catalog.
//! - `POST /v1/acp/{server}?agent={id}` takes one ACP JSON-RPC envelope (`initialize`, `session/new`,
//!   `session/prompt`, `session/cancel`); the prompt request returns when the turn ends.
//! - `GET /v1/acp/{server}` streams every envelope of that server as server-sent events (`id:` numbered, replayed
//!   from the start), from which the turn's `session/update` notifications become [`AgentEvent`]s.
//!
//! One ACP server per foundry session (its id derived from the session key). Steer is delivered as a follow-up
//! prompt within the same turn (ACP has no steer method); interrupt sends `session/cancel`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{AgentBackend, AgentEvent, TurnEnd, TurnRequest};

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

/// One agent of the server's catalog, with its selectable options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogAgent {
    pub id: String,
    pub installed: bool,
    pub models: Vec<CatalogOption>,
    pub modes: Vec<CatalogOption>,
    pub thought_levels: Vec<CatalogOption>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogOption {
    pub value: String,
    pub name: String,
}

#[derive(Default)]
struct ServerState {
    agent_session: Option<String>,
    /// Highest SSE event id already consumed: the stream replays from the start.
    last_event: u64,
}

struct Inner {
    base: String,
    agent: String,
    client: reqwest::Client,
    servers: Mutex<HashMap<String, ServerState>>,
    next_id: AtomicU64,
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
        SandboxAgent {
            inner: Arc::new(Inner {
                base: base_url.trim_end_matches('/').to_owned(),
                agent: agent.to_owned(),
                client,
                servers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
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

    fn acp_url(&self, server: &str) -> String {
        format!("{}/v1/acp/{server}?agent={}", self.inner.base, self.inner.agent)
    }

    /// One JSON-RPC request; returns its `result`.
    async fn rpc(&self, server: &str, method: &str, params: Value) -> Result<Value, SandboxError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let envelope = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let res = self
            .inner
            .client
            .post(self.acp_url(server))
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

    /// A notification (no reply expected, e.g. `session/cancel`).
    async fn notify(&self, server: &str, method: &str, params: Value) -> Result<(), SandboxError> {
        let envelope = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        let res = self
            .inner
            .client
            .post(self.acp_url(server))
            .json(&envelope)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(SandboxError::Status { status: res.status().as_u16(), body: res.text().await.unwrap_or_default() })
        }
    }

    /// Initialises the ACP server of `server` and opens its agent session (once per server).
    async fn ensure_session(&self, server: &str, cwd: &str) -> Result<String, SandboxError> {
        if let Some(s) = self.state(server, |s| s.agent_session.clone()) {
            return Ok(s);
        }
        self.rpc(server, "initialize", json!({ "protocolVersion": 1, "clientCapabilities": {} })).await?;
        let created = self.rpc(server, "session/new", json!({ "cwd": cwd, "mcpServers": [] })).await?;
        // Real agents name their session; the mock agent echoes and has none: use the server id.
        let session = created["sessionId"].as_str().unwrap_or(server).to_owned();
        self.state(server, |s| s.agent_session = Some(session.clone()));
        Ok(session)
    }

    fn state<T>(&self, server: &str, f: impl FnOnce(&mut ServerState) -> T) -> T {
        let mut servers = self.inner.servers.lock().unwrap_or_else(|p| p.into_inner());
        f(servers.entry(server.to_owned()).or_default())
    }

    async fn turn(
        self,
        request: TurnRequest,
        events: mpsc::Sender<AgentEvent>,
        mut steer: mpsc::UnboundedReceiver<String>,
    ) -> TurnEnd {
        let server = server_id(&request);
        let session = match self.ensure_session(&server, "/tmp").await {
            Ok(s) => s,
            Err(e) => return TurnEnd::Failed(e.to_string()),
        };
        let _cancel_on_drop = CancelOnDrop { agent: self.clone(), server: server.clone(), session: session.clone() };
        let mut stream = match self.open_stream(&server).await {
            Ok(s) => s,
            Err(e) => return TurnEnd::Failed(e.to_string()),
        };
        let mut prompts = vec![request.prompt.clone()];
        while let Some(text) = prompts.pop() {
            let params = json!({ "sessionId": session, "prompt": [{ "type": "text", "text": text }] });
            let prompt = self.rpc(&server, "session/prompt", params);
            tokio::pin!(prompt);
            loop {
                tokio::select! {
                    result = &mut prompt => {
                        if let Err(e) = result {
                            return TurnEnd::Failed(e.to_string());
                        }
                        // Envelopes the server wrote before answering may still be in flight on the stream.
                        self.drain_stream(&server, &mut stream, &events, Duration::from_millis(50)).await;
                        break;
                    }
                    chunk = stream.chunk() => match chunk {
                        Ok(Some(bytes)) => {
                            if !self.forward(&server, stream_buffer(&mut stream.buf, &bytes), &events).await {
                                return TurnEnd::Completed;
                            }
                        }
                        Ok(None) | Err(_) => {
                            // The stream ended early: keep waiting for the prompt's answer alone.
                            let result = (&mut prompt).await;
                            return match result {
                                Ok(_) => TurnEnd::Completed,
                                Err(e) => TurnEnd::Failed(e.to_string()),
                            };
                        }
                    },
                    Some(guidance) = steer.recv() => {
                        let _ = events.send(AgentEvent::TextDelta { text: format!("[steer: {guidance}] ") }).await;
                        prompts.push(format!("Guidance for the work in progress: {guidance}"));
                    }
                }
            }
        }
        TurnEnd::Completed
    }

    async fn open_stream(&self, server: &str) -> Result<SseStream, SandboxError> {
        let last = self.state(server, |s| s.last_event);
        let res = self
            .inner
            .client
            .get(format!("{}/v1/acp/{server}", self.inner.base))
            .header("accept", "text/event-stream")
            .header("last-event-id", last.to_string())
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(SandboxError::Status {
                status: res.status().as_u16(),
                body: res.text().await.unwrap_or_default(),
            });
        }
        Ok(SseStream { res, buf: String::new() })
    }

    async fn drain_stream(
        &self,
        server: &str,
        stream: &mut SseStream,
        events: &mpsc::Sender<AgentEvent>,
        wait: Duration,
    ) {
        while let Ok(Ok(Some(bytes))) = tokio::time::timeout(wait, stream.chunk()).await {
            if !self.forward(server, stream_buffer(&mut stream.buf, &bytes), events).await {
                return;
            }
        }
    }

    /// Turns complete SSE events in `buf` into agent events. False if the receiver is gone.
    async fn forward(&self, server: &str, buf: &mut String, events: &mpsc::Sender<AgentEvent>) -> bool {
        while let Some(end) = buf.find("\n\n") {
            let raw: String = buf.drain(..end + 2).collect();
            let (id, data) = parse_sse(&raw);
            if let Some(id) = id {
                let seen = self.state(server, |s| {
                    let seen = id <= s.last_event;
                    s.last_event = s.last_event.max(id);
                    seen
                });
                if seen {
                    continue;
                }
            }
            let Some(data) = data else { continue };
            let Ok(envelope) = serde_json::from_str::<Value>(&data) else { continue };
            for event in map_envelope(&envelope) {
                if events.send(event).await.is_err() {
                    return false;
                }
            }
        }
        true
    }
}

struct SseStream {
    res: reqwest::Response,
    buf: String,
}

impl SseStream {
    async fn chunk(&mut self) -> reqwest::Result<Option<Vec<u8>>> {
        Ok(self.res.chunk().await?.map(|b| b.to_vec()))
    }
}

fn stream_buffer<'a>(buf: &'a mut String, bytes: &[u8]) -> &'a mut String {
    buf.push_str(&String::from_utf8_lossy(bytes).replace("\r\n", "\n"));
    buf
}

/// Sends `session/cancel` when a turn is dropped (interrupt, passivation, stop), so the agent stops working too.
struct CancelOnDrop {
    agent: SandboxAgent,
    server: String,
    session: String,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let (agent, server, session) = (self.agent.clone(), self.server.clone(), self.session.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            // Bounded by the request timeout: a best-effort notice to the agent, not work that outlives it.
            handle.spawn(async move {
                let _ = agent.notify(&server, "session/cancel", json!({ "sessionId": session })).await;
            });
        }
    }
}

/// The ACP server id of a session: its encoded key with only `[A-Za-z0-9-]`.
fn server_id(request: &TurnRequest) -> String {
    let key = &request.session_id;
    let mut out = String::from("foundry-");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("-{b:02x}"));
        }
    }
    out
}

fn parse_sse(raw: &str) -> (Option<u64>, Option<String>) {
    let mut id = None;
    let mut data: Option<String> = None;
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            }
        }
    }
    (id, data)
}

/// Maps one ACP envelope from the stream to agent events: `session/update` notifications (message chunks, tool calls
/// and their updates) and the mock agent's `mock/echo` of a prompt.
fn map_envelope(envelope: &Value) -> Vec<AgentEvent> {
    let method = envelope["method"].as_str().unwrap_or_default();
    let params = &envelope["params"];
    match method {
        "session/update" => {
            let update = &params["update"];
            match update["sessionUpdate"].as_str().unwrap_or_default() {
                "agent_message_chunk" => {
                    let text = update["content"]["text"].as_str().unwrap_or_default();
                    vec![AgentEvent::TextDelta { text: text.to_owned() }]
                }
                "tool_call" => vec![AgentEvent::ToolCall {
                    id: update["toolCallId"].as_str().unwrap_or_default().to_owned(),
                    name: update["title"].as_str().or(update["kind"].as_str()).unwrap_or("tool").to_owned(),
                    input: update["rawInput"].clone(),
                }],
                "tool_call_update" if update["status"] == "completed" => vec![AgentEvent::ToolResult {
                    id: update["toolCallId"].as_str().unwrap_or_default().to_owned(),
                    output: update["content"].to_string(),
                }],
                _ => Vec::new(),
            }
        }
        "mock/echo" => {
            let message = &params["message"];
            if message["method"] == "session/prompt" {
                let text: Vec<&str> = message["params"]["prompt"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                vec![AgentEvent::TextDelta { text: format!("echo: {}", text.join(" ")) }]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

fn options(config: &Value, category: &str) -> Vec<CatalogOption> {
    let Some(list) = config.as_array() else { return Vec::new() };
    let mut out = Vec::new();
    for opt in list.iter().filter(|c| c["category"] == category) {
        collect_options(&opt["options"], &mut out);
    }
    out
}

/// Options may nest in groups (`{name, options: [...]}`).
fn collect_options(list: &Value, out: &mut Vec<CatalogOption>) {
    for o in list.as_array().into_iter().flatten() {
        if let Some(value) = o["value"].as_str() {
            out.push(CatalogOption { value: value.to_owned(), name: o["name"].as_str().unwrap_or(value).to_owned() });
        } else {
            collect_options(&o["options"], out);
        }
    }
}

fn parse_agent(a: &Value) -> CatalogAgent {
    let config = &a["configOptions"];
    CatalogAgent {
        id: a["id"].as_str().unwrap_or_default().to_owned(),
        installed: a["installed"].as_bool().unwrap_or(false),
        models: options(config, "model"),
        modes: options(config, "mode"),
        thought_levels: options(config, "thought_level"),
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
        Box::pin(self.clone().turn(request, events, steer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_parse_and_map() {
        let (id, data) = parse_sse("event: message\nid: 7\ndata: {\"a\":1}\n\n");
        assert_eq!((id, data.as_deref()), (Some(7), Some("{\"a\":1}")));
        let chunk = json!({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s","update":{
            "sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hel"}}}});
        assert_eq!(map_envelope(&chunk), vec![AgentEvent::TextDelta { text: "Hel".into() }]);
        let echo = json!({"jsonrpc":"2.0","method":"mock/echo","params":{"message":{"method":"session/prompt",
            "params":{"prompt":[{"type":"text","text":"hi"}]}}}});
        assert_eq!(map_envelope(&echo), vec![AgentEvent::TextDelta { text: "echo: hi".into() }]);
        assert!(map_envelope(&json!({"id":1,"result":{}})).is_empty());
    }

    #[test]
    fn catalog_options_flatten_groups() {
        let agent = json!({"id":"codex","installed":true,"configOptions":[
            {"category":"model","options":[{"value":"a","name":"A"},{"name":"group","options":[{"value":"b","name":"B"}]}]},
            {"category":"thought_level","options":[{"value":"high","name":"High"}]}]});
        let parsed = parse_agent(&agent);
        assert_eq!(parsed.models.iter().map(|o| o.value.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(parsed.thought_levels.len(), 1);
        assert!(parsed.modes.is_empty());
    }
}
