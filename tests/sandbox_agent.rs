//! The sandbox-agent backend against the real sandbox-agent server (its built-in `mock` agent needs no credentials:
//! it answers every JSON-RPC request with `{"echoed": <request>}` and echoes it as a `mock/echo` notification on the
//! server's stream, so the tests see every request foundry sent). The binary comes from `SANDBOX_AGENT_BIN`
//! (`.ci/run` installs it from npm); without it these tests print why and return, except under `CI=true`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::{
    ChangeModel, GetAgentState, GetSessionDetail, ResumeSession, RunQueue, SendMessage, SessionDetail, Steer,
    SuspendSession,
};
use foundry::actors::summary::SessionStatus;
use foundry::actors::user::UpsertUser;
use foundry::actors::{Domain, DomainError, RepoKey, SessionKey};
use foundry::integrations::agent::{AgentBackend, AgentEvent, SandboxAgent, TurnEnd, TurnRequest};
use foundry::runtime::{CallError, Runtime};
use futures_util::future::BoxFuture;
use serde_json::Value;
use support::sandbox::Server;
use tokio::sync::{mpsc, watch};

async fn start_server() -> Option<Server> {
    support::sandbox::start(true).await
}

#[actix_rt::test]
async fn catalog_comes_from_the_server() {
    let Some(server) = start_server().await else { return };
    let agent = SandboxAgent::new(&server.url, "mock");
    let catalog = agent.catalog().await.unwrap();
    let mock = catalog.iter().find(|a| a.id == "mock").expect("mock in the catalog");
    assert_eq!(mock.setting("model").map(|s| s.id.as_str()), Some("model"));
    assert_eq!(mock.setting("thought_level").map(|s| s.id.as_str()), Some("thought_level"));
    let codex = catalog.iter().find(|a| a.id == "codex").expect("codex in the catalog");
    assert!(!codex.models.is_empty() && !codex.thought_levels.is_empty(), "{codex:?}");
    // The domain's catalog refreshes from it: models are then the server's codex models.
    let (rt, _dir) = support::runtime(0);
    let domain = Domain::without_agent(rt);
    let n = domain.refresh_models(&agent, "codex").await.unwrap();
    assert_eq!(n, codex.models.len());
    assert!(domain.models().iter().all(|m| m.agent == "codex"));
    // An agent the server does not offer keeps the current catalog.
    assert!(domain.refresh_models(&agent, "no-such-agent").await.is_err());
    assert_eq!(domain.models().len(), n);
}

/// A domain on `rt` whose sessions run on `agent`, with organization `acme` and repository `web`.
async fn domain_on(rt: Runtime, agent: Arc<dyn AgentBackend>) -> Domain {
    let domain = Domain::with_agent(rt, agent);
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&"acme".to_owned(), org).await.unwrap();
    let add = AddRepository {
        repo_id: "web".into(),
        full_name: "acme/web".into(),
        remote_url: "https://github.com/acme/web.git".into(),
        default_branch: "main".into(),
        user_id: None,
    };
    domain.add_repository("acme", add).await.unwrap();
    domain
}

async fn create_task(domain: &Domain, prompt: &str, user: Option<&str>) -> SessionKey {
    let msg =
        CreateTask { prompt: prompt.into(), title: None, branch: None, model: None, user_id: user.map(Into::into) };
    let created = domain.create_task(&RepoKey::new("acme", "web"), msg).await.unwrap();
    created.task.session(&created.session_id)
}

/// Waits until the session is idle with `replies` agent messages.
async fn wait_replies(domain: &Domain, session: &SessionKey, replies: usize) -> SessionDetail {
    let mut last = None;
    for _ in 0..800 {
        let d = domain.sessions.read(session, GetSessionDetail).await.unwrap();
        if d.status == SessionStatus::Error {
            panic!("the turn failed: {:?}", d.transcript);
        }
        if d.status == SessionStatus::Idle && agent_replies(&d).len() >= replies {
            return d;
        }
        last = Some(d);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {replies} replies: {last:?}");
}

fn agent_replies(d: &SessionDetail) -> Vec<String> {
    d.transcript.iter().filter(|i| i.kind == "message" && i.role == "agent").map(|i| i.text.clone()).collect()
}

/// Every transcript item once: no output replayed.
fn assert_no_duplicates(d: &SessionDetail) {
    let items: Vec<(&str, &str, &str)> =
        d.transcript.iter().map(|i| (i.kind.as_str(), i.role.as_str(), i.text.as_str())).collect();
    for (n, item) in items.iter().enumerate() {
        assert!(!items[..n].contains(item), "{item:?} twice in {items:?}");
    }
}

async fn agent_state(domain: &Domain, session: &SessionKey) -> Value {
    domain.sessions.read(session, GetAgentState).await.unwrap().expect("a checkpoint was stored")
}

fn server_of(state: &Value) -> String {
    state["server"].as_str().expect("server id in the checkpoint").to_owned()
}

/// The requests of `method` the mock agent received on `server`.
async fn requests(server: &Server, acp: &str, method: &str) -> Vec<Value> {
    server.echoed(acp).await.into_iter().filter(|m| m["method"] == method).collect()
}

fn prompt_texts(echoed: &[Value]) -> Vec<String> {
    echoed
        .iter()
        .filter(|m| m["method"] == "session/prompt")
        .map(|m| m["params"]["prompt"][0]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[actix_rt::test]
async fn a_session_turn_runs_through_the_real_server() {
    let Some(server) = start_server().await else { return };
    let (rt, _dir) = support::runtime(2);
    let domain = domain_on(rt, Arc::new(SandboxAgent::new(&server.url, "mock"))).await;
    let session = create_task(&domain, "Say hello", None).await;
    let d = wait_replies(&domain, &session, 1).await;
    assert_eq!(agent_replies(&d), ["echo: Say hello"]);
    // A second prompt in the same session reuses its ACP server and sees only its own events.
    let first = agent_state(&domain, &session).await;
    domain.send_message(&session, "Again", None).await.unwrap();
    let d = wait_replies(&domain, &session, 2).await;
    assert_eq!(agent_replies(&d), ["echo: Say hello", "echo: Again"]);
    let second = agent_state(&domain, &session).await;
    assert_eq!((server_of(&first), &first["session"]), (server_of(&second), &second["session"]));
    assert!(second["cursor"].as_u64() > first["cursor"].as_u64(), "{first} {second}");
    assert_eq!(requests(&server, &server_of(&second), "session/new").await.len(), 1);
}

#[actix_rt::test]
async fn model_mode_and_thought_level_reach_the_agent() {
    let Some(server) = start_server().await else { return };
    let (rt, _dir) = support::runtime(2);
    let agent = SandboxAgent::new(&server.url, "mock");
    let domain = domain_on(rt, Arc::new(agent.clone())).await;
    domain.refresh_models(&agent, "mock").await.unwrap();
    // A new user's default model is the live agent's default, so a task created without a model works.
    let user = UpsertUser { name: "Ada".into(), email: "ada@example.com".into(), avatar_url: None };
    let ada = domain.users.mutate(&"u1".to_owned(), user).await.unwrap();
    assert_eq!(ada.default_model, "mock");
    let session = create_task(&domain, "first", Some("u1")).await;
    let d = wait_replies(&domain, &session, 1).await;
    assert_eq!((d.model.as_str(), d.mode.as_str(), d.thought_level.as_str()), ("mock", "default", "medium"));
    let acp = server_of(&agent_state(&domain, &session).await);
    // After session/new, every setting the agent offers is applied, in the agent's values ("default" is its own).
    let configs = requests(&server, &acp, "session/set_config_option").await;
    let values: Vec<(&str, &str)> = configs
        .iter()
        .map(|m| (m["params"]["configId"].as_str().unwrap(), m["params"]["value"].as_str().unwrap()))
        .collect();
    assert_eq!(values, [("model", "mock"), ("thought_level", "medium")]);
    let modes = requests(&server, &acp, "session/set_mode").await;
    assert_eq!(modes.len(), 1);
    assert_eq!(modes[0]["params"]["modeId"], "normal");

    // Modes and thought levels are checked against the live catalog.
    let change = |model: &str, mode: Option<&str>, level: Option<&str>| ChangeModel {
        model: model.into(),
        mode: mode.map(Into::into),
        thought_level: level.map(Into::into),
        user_id: None,
    };
    let refused = domain.sessions.mutate(&session, change("mock-fast", Some("accept-edits"), None)).await;
    assert!(matches!(refused, Err(CallError::Handler(DomainError::Invalid { .. }))), "{refused:?}");
    let refused = domain.sessions.mutate(&session, change("mock-fast", None, Some("xhigh"))).await;
    assert!(matches!(refused, Err(CallError::Handler(DomainError::Invalid { .. }))), "{refused:?}");
    domain.sessions.mutate(&session, change("mock-fast", Some("plan"), Some("high"))).await.unwrap();

    domain.send_message(&session, "second", None).await.unwrap();
    wait_replies(&domain, &session, 2).await;
    let echoed = server.echoed(&acp).await;
    let at = |pred: &dyn Fn(&Value) -> bool| echoed.iter().position(pred).expect("request sent");
    let fast = at(&|m| m["method"] == "session/set_config_option" && m["params"]["value"] == "mock-fast");
    let plan = at(&|m| m["method"] == "session/set_mode" && m["params"]["modeId"] == "plan");
    let high = at(&|m| m["method"] == "session/set_config_option" && m["params"]["value"] == "high");
    let second = at(&|m| m["method"] == "session/prompt" && m["params"]["prompt"][0]["text"] == "second");
    assert!(fast < second && plan < second && high < second, "{echoed:?}");
    let state = agent_state(&domain, &session).await;
    assert_eq!(state["applied"], serde_json::json!({"model": "mock-fast", "mode": "plan", "thought_level": "high"}));

    // Unchanged settings are not sent again.
    domain.send_message(&session, "third", None).await.unwrap();
    wait_replies(&domain, &session, 3).await;
    assert_eq!(requests(&server, &acp, "session/set_config_option").await.len(), 4);
    assert_eq!(requests(&server, &acp, "session/set_mode").await.len(), 2);
}

/// Runs one turn on the backend directly; returns its events and end.
async fn run_turn(agent: &SandboxAgent, request: TurnRequest) -> (Vec<AgentEvent>, TurnEnd) {
    let (tx, mut rx) = mpsc::channel(1024);
    let (_steer, steer_rx) = mpsc::unbounded_channel();
    let end = agent.run_turn(request, tx, steer_rx).await;
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (events, end)
}

fn last_checkpoint(events: &[AgentEvent]) -> Value {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            AgentEvent::Checkpoint { state } => Some(state.clone()),
            _ => None,
        })
        .expect("a checkpoint")
}

#[actix_rt::test]
async fn the_agent_session_opens_in_the_requested_directory() {
    let Some(server) = start_server().await else { return };
    let agent = SandboxAgent::new(&server.url, "mock");
    let workspace = tempfile::tempdir().unwrap();
    let cwd = workspace.path().to_string_lossy().into_owned();
    let request = TurnRequest {
        session_id: "acme/web/t1/s1".into(),
        cwd: Some(cwd.clone()),
        model: "mock".into(),
        mode: "default".into(),
        thought_level: "low".into(),
        prompt: "where am I".into(),
        ..TurnRequest::default()
    };
    let (events, end) = run_turn(&agent, request.clone()).await;
    assert_eq!(end, TurnEnd::Completed);
    assert!(events.contains(&AgentEvent::TextDelta { text: "echo: where am I".into() }), "{events:?}");
    let state = last_checkpoint(&events);
    let new = requests(&server, &server_of(&state), "session/new").await;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["params"]["cwd"], cwd.as_str());

    // Without a workspace the agent works in a directory of its own.
    let (events, _) = run_turn(&agent, TurnRequest { cwd: None, ..request.clone() }).await;
    let state = last_checkpoint(&events);
    let scratch = state["cwd"].as_str().unwrap().to_owned();
    assert!(scratch.contains(&server_of(&state)) && Path::new(&scratch).is_dir(), "{scratch}");

    // A workspace that moved means a new agent session there.
    let moved = tempfile::tempdir().unwrap();
    let moved_cwd = moved.path().to_string_lossy().into_owned();
    let next = TurnRequest { cwd: Some(moved_cwd.clone()), resume: Some(state.clone()), ..request };
    let (events, end) = run_turn(&agent, next).await;
    assert_eq!(end, TurnEnd::Completed);
    let moved_state = last_checkpoint(&events);
    assert_ne!(server_of(&moved_state), server_of(&state));
    assert_eq!(moved_state["cwd"], moved_cwd.as_str());
}

#[actix_rt::test]
async fn a_foundry_restart_continues_the_agent_session_without_replay() {
    let Some(server) = start_server().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let rt = support::runtime_at(dir.path(), 2);
    let domain = domain_on(rt.clone(), Arc::new(SandboxAgent::new(&server.url, "mock"))).await;
    let session = create_task(&domain, "first", None).await;
    wait_replies(&domain, &session, 1).await;
    let before = agent_state(&domain, &session).await;
    rt.shutdown().await;

    // Output the session never committed (a turn cut by the restart) waits on the stream after the cursor.
    let acp = server_of(&before);
    let ghost = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "session/prompt",
        "params": { "sessionId": before["session"], "prompt": [{ "type": "text", "text": "ghost" }] } });
    let client = foundry::integrations::http_client_builder().build().unwrap();
    let res = client.post(format!("{}/v1/acp/{acp}", server.url)).json(&ghost).send().await.unwrap();
    assert!(res.status().is_success());

    let rt = support::runtime_at(dir.path(), 2);
    let domain = Domain::with_agent(rt, Arc::new(SandboxAgent::new(&server.url, "mock")));
    domain.send_message(&session, "second", None).await.unwrap();
    let d = wait_replies(&domain, &session, 2).await;
    assert_eq!(agent_replies(&d), ["echo: first", "echo: second"]);
    assert_no_duplicates(&d);
    let after = agent_state(&domain, &session).await;
    assert_eq!((server_of(&after), &after["session"]), (acp.clone(), &before["session"]));
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(requests(&server, &acp, "session/new").await.len(), 1, "the same agent session continued");
}

#[actix_rt::test]
async fn an_agent_server_restart_continues_in_a_primed_new_session() {
    let Some(mut server) = start_server().await else { return };
    let (rt, _dir) = support::runtime(2);
    let domain = domain_on(rt, Arc::new(SandboxAgent::new(&server.url, "mock"))).await;
    let session = create_task(&domain, "first", None).await;
    wait_replies(&domain, &session, 1).await;
    let before = agent_state(&domain, &session).await;

    server.restart().await;
    domain.send_message(&session, "second", None).await.unwrap();
    let d = wait_replies(&domain, &session, 2).await;
    assert_eq!(agent_replies(&d), ["echo: first", "echo: second"]);
    assert_no_duplicates(&d);
    let after = agent_state(&domain, &session).await;
    assert_ne!(server_of(&after), server_of(&before));
    assert_eq!(after["generation"].as_u64(), before["generation"].as_u64().map(|g| g + 1));
    // The new agent session was primed with the conversation (the mock has no session/load), out of sight.
    let prompts = prompt_texts(&server.echoed(&server_of(&after)).await);
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts[0].contains("User: first") && prompts[0].contains("Assistant: echo: first"), "{prompts:?}");
    assert!(!prompts[0].contains("second"), "the new prompt is not history: {prompts:?}");
    assert_eq!(prompts[1], "second");

    // And it carries on there.
    domain.send_message(&session, "third", None).await.unwrap();
    let d = wait_replies(&domain, &session, 3).await;
    assert_eq!(agent_replies(&d), ["echo: first", "echo: second", "echo: third"]);
    assert_eq!(server_of(&agent_state(&domain, &session).await), server_of(&after));
}

#[actix_rt::test]
async fn two_installs_sharing_one_agent_server_never_share_a_transcript() {
    let Some(server) = start_server().await else { return };
    let (rt_a, _a) = support::runtime(1);
    let (rt_b, _b) = support::runtime(1);
    let a = domain_on(rt_a, Arc::new(SandboxAgent::new(&server.url, "mock"))).await;
    let b = domain_on(rt_b, Arc::new(SandboxAgent::new(&server.url, "mock"))).await;
    let session_a = create_task(&a, "from A", None).await;
    let session_b = create_task(&b, "from B", None).await;
    assert_eq!(session_a, session_b, "the same key in both installs");
    wait_replies(&a, &session_a, 1).await;
    wait_replies(&b, &session_b, 1).await;
    a.send_message(&session_a, "again A", None).await.unwrap();
    b.send_message(&session_b, "again B", None).await.unwrap();
    let da = wait_replies(&a, &session_a, 2).await;
    let db = wait_replies(&b, &session_b, 2).await;
    assert_eq!(agent_replies(&da), ["echo: from A", "echo: again A"]);
    assert_eq!(agent_replies(&db), ["echo: from B", "echo: again B"]);
    assert_ne!(server_of(&agent_state(&a, &session_a).await), server_of(&agent_state(&b, &session_b).await));
}

/// The sandbox agent, holding each turn until the gate is open.
struct Gated {
    agent: SandboxAgent,
    open: watch::Receiver<bool>,
}

impl AgentBackend for Gated {
    fn run_turn(
        &self,
        request: TurnRequest,
        events: mpsc::Sender<AgentEvent>,
        steer: mpsc::UnboundedReceiver<String>,
    ) -> BoxFuture<'static, TurnEnd> {
        let mut open = self.open.clone();
        let agent = self.agent.clone();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            agent.run_turn(request, events, steer).await
        })
    }
}

fn is_archived<T: std::fmt::Debug>(result: &Result<T, CallError<DomainError>>) -> bool {
    matches!(result, Err(CallError::Handler(DomainError::TaskArchived(_))))
}

#[actix_rt::test]
async fn a_suspended_session_takes_no_prompts_until_resumed_even_after_a_restart() {
    let Some(server) = start_server().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (open_tx, open) = watch::channel(false);
    let rt = support::runtime_at(dir.path(), 2);
    let gated = Gated { agent: SandboxAgent::new(&server.url, "mock"), open: open.clone() };
    let domain = domain_on(rt.clone(), Arc::new(gated)).await;
    let session = create_task(&domain, "held", None).await;
    domain.send_message(&session, "follow-up", None).await.unwrap();
    let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
    assert_eq!((d.status, d.queued), (SessionStatus::Running, 1));

    let archive = SuspendSession { reason: "archived".into(), user_id: Some("u1".into()) };
    domain.sessions.exec(&session, archive).await.unwrap();
    let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
    assert_eq!((d.status, d.queued), (SessionStatus::Stopped, 0));
    let last = d.transcript.last().unwrap();
    assert_eq!((last.kind.as_str(), last.text.as_str()), ("status", "turn cancelled: task archived"));
    // Opening the gate now runs nothing: the turn was cancelled.
    open_tx.send_replace(true);
    assert!(is_archived(&domain.send_message(&session, "refused", None).await));
    let steer = Steer { guidance: "refused".into(), user_id: None };
    assert!(is_archived(&domain.sessions.exec(&session, steer).await));
    assert!(is_archived(&domain.sessions.exec(&session, RunQueue).await));
    let send = SendMessage { text: "refused".into(), user_id: None };
    assert!(is_archived(&domain.sessions.mutate(&session, send).await));
    // Suspending again changes nothing.
    let again = SuspendSession { reason: "archived".into(), user_id: None };
    domain.sessions.exec(&session, again).await.unwrap();
    assert_eq!(domain.sessions.read(&session, GetSessionDetail).await.unwrap().transcript.len(), d.transcript.len());
    rt.shutdown().await;

    // The suspension outlives a restart.
    let rt = support::runtime_at(dir.path(), 2);
    let domain = Domain::with_agent(rt, Arc::new(Gated { agent: SandboxAgent::new(&server.url, "mock"), open }));
    let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
    assert_eq!((d.status, d.queued), (SessionStatus::Stopped, 0));
    assert!(is_archived(&domain.send_message(&session, "refused", None).await));

    domain.sessions.exec(&session, ResumeSession { user_id: Some("u1".into()) }).await.unwrap();
    assert_eq!(domain.sessions.read(&session, GetSessionDetail).await.unwrap().status, SessionStatus::Idle);
    domain.send_message(&session, "after", None).await.unwrap();
    let d = wait_replies(&domain, &session, 1).await;
    assert_eq!(agent_replies(&d), ["echo: after"]);
    assert!(!d.transcript.iter().any(|i| i.text.contains("refused")), "{:?}", d.transcript);
}
