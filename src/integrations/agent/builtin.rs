//! The built-in agent: deterministic, no network. Its reply is derived from the prompt (same prompt, same events,
//! apart from steer), streamed one word per `TextDelta` with `pace` between deltas. A prompt containing "tool" always
//! makes a `read_file` tool call (and others do now and then, by a stable hash of the prompt); one containing "edit"
//! always reports a file change (likewise now and then for others). [`TurnGate`] lets tests hold turns at their start.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::mpsc::{self, Sender, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use super::{AgentBackend, AgentEvent, TurnEnd, TurnRequest};

/// The id of the (single) tool call of a turn.
const TOOL_ID: &str = "tool-1";

/// Files the built-in agent pretends to read and change.
const FILES: [&str; 6] = ["lib", "main", "config", "handlers", "session", "routes"];

/// Openings of the reply, picked by the prompt hash.
const OPENINGS: [&str; 3] = ["I'll look into:", "Let me work on:", "Looking at:"];

/// How many prompt words the reply repeats.
const SUMMARY_WORDS: usize = 8;

/// The deterministic built-in agent. Cheap to clone (the gate, if any, is shared).
#[derive(Debug, Clone)]
pub struct BuiltinAgent {
    pace: Duration,
    gate: Option<Arc<GateShared>>,
}

impl BuiltinAgent {
    /// An agent waiting `pace` between deltas; its turns run immediately.
    pub fn new(pace: Duration) -> Self {
        BuiltinAgent { pace, gate: None }
    }

    /// An agent whose turns announce their start on the returned gate and then wait there until released.
    pub fn with_gate(pace: Duration) -> (Self, TurnGate) {
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(GateShared { started: started_tx, state: Mutex::default(), notify: Notify::new() });
        (BuiltinAgent { pace, gate: Some(shared.clone()) }, TurnGate { shared, started: started_rx })
    }
}

impl Default for BuiltinAgent {
    fn default() -> Self {
        BuiltinAgent::new(Duration::from_millis(5))
    }
}

impl AgentBackend for BuiltinAgent {
    fn run_turn(
        &self,
        request: TurnRequest,
        events: Sender<AgentEvent>,
        steer: UnboundedReceiver<String>,
    ) -> BoxFuture<'static, TurnEnd> {
        let pace = self.pace;
        let gate = self.gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.hold(&request.session_id).await;
            }
            run(pace, &request.prompt, events, steer).await
        }
        .boxed()
    }
}

/// One step of a planned turn.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Word(String),
    Tool { path: String, lines: u32 },
    File { path: String, added: u32, removed: u32 },
}

/// 64-bit FNV-1a: stable across runs and platforms (unlike std's randomly seeded hasher).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn words(text: &str) -> impl Iterator<Item = Step> + '_ {
    text.split_whitespace().map(|w| Step::Word(format!("{w} ")))
}

/// The deterministic steps of a turn for `prompt`.
fn plan(prompt: &str) -> Vec<Step> {
    let hash = fnv1a(prompt);
    let lower = prompt.to_lowercase();
    let tool = lower.contains("tool") || hash.is_multiple_of(3);
    let edit = lower.contains("edit") || (hash >> 8).is_multiple_of(4);
    let path = format!("src/{}.rs", FILES[((hash >> 16) % FILES.len() as u64) as usize]);

    let mut summary: Vec<&str> = prompt.split_whitespace().take(SUMMARY_WORDS).collect();
    if summary.is_empty() {
        summary.push("the request");
    }
    let summary = summary.join(" ");
    let summary = summary.trim_end_matches(|c: char| c.is_ascii_punctuation());
    let summary = if summary.is_empty() { "the request" } else { summary };

    let mut steps: Vec<Step> = Vec::new();
    steps.extend(words(OPENINGS[(hash % OPENINGS.len() as u64) as usize]));
    steps.extend(words(&format!("{summary}.")));
    steps.extend(words("First, I will read the relevant code to understand the current behaviour."));
    if tool {
        steps.push(Step::Tool { path: path.clone(), lines: 20 + ((hash >> 24) % 200) as u32 });
    }
    steps.extend(words("Then I will make the smallest change that addresses it and check the result."));
    if edit {
        steps.push(Step::File { path, added: 1 + ((hash >> 32) % 20) as u32, removed: ((hash >> 40) % 7) as u32 });
    }
    steps.extend(words("Done."));
    steps
}

/// Waits `pace` (a zero pace only yields, so a turn never hogs its thread).
async fn pause(pace: Duration) {
    if pace.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(pace).await;
    }
}

/// Plays the planned steps, taking steer before each word. Returns early (completed) if the receiver is gone.
async fn run(
    pace: Duration,
    prompt: &str,
    events: Sender<AgentEvent>,
    mut steer: UnboundedReceiver<String>,
) -> TurnEnd {
    let mut steps: VecDeque<Step> = plan(prompt).into();
    let mut first = true;
    while let Some(step) = steps.pop_front() {
        if !first {
            pause(pace).await;
        }
        first = false;
        match step {
            Step::Word(text) => {
                while let Ok(guidance) = steer.try_recv() {
                    let text = format!("[steer: {guidance}] ");
                    if events.send(AgentEvent::TextDelta { text }).await.is_err() {
                        return TurnEnd::Completed;
                    }
                    steps.extend(words(&format!("Adjusted to guidance: {guidance}.")));
                }
                if events.send(AgentEvent::TextDelta { text }).await.is_err() {
                    return TurnEnd::Completed;
                }
            }
            Step::Tool { path, lines } => {
                let call = AgentEvent::ToolCall {
                    id: TOOL_ID.to_owned(),
                    name: "read_file".to_owned(),
                    input: serde_json::json!({ "path": path }),
                };
                if events.send(call).await.is_err() {
                    return TurnEnd::Completed;
                }
                // The tool call is in progress: dropping the turn future here cancels it.
                pause(pace).await;
                let output = format!("read {lines} lines of {path}");
                if events.send(AgentEvent::ToolResult { id: TOOL_ID.to_owned(), output }).await.is_err() {
                    return TurnEnd::Completed;
                }
            }
            Step::File { path, added, removed } => {
                if events.send(AgentEvent::FileChange { path, added, removed }).await.is_err() {
                    return TurnEnd::Completed;
                }
            }
        }
    }
    TurnEnd::Completed
}

/// Releases remembered by a gate.
#[derive(Debug, Default)]
struct GateState {
    /// Per session, how many of its turns may still pass.
    permits: HashMap<String, usize>,
    /// Every turn passes (set by `release_all`).
    open: bool,
}

#[derive(Debug)]
struct GateShared {
    started: UnboundedSender<String>,
    state: Mutex<GateState>,
    notify: Notify,
}

impl GateShared {
    /// Announces the turn's start, then waits until it may continue (consuming one permit of its session).
    async fn hold(&self, session: &str) {
        let _ = self.started.send(session.to_owned());
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.open {
                    return;
                }
                if let Some(n) = state.permits.get_mut(session) {
                    *n -= 1;
                    if *n == 0 {
                        state.permits.remove(session);
                    }
                    return;
                }
            }
            notified.await;
        }
    }
}

/// Test support: holds every turn of a [`BuiltinAgent::with_gate`] agent at its start until released.
#[derive(Debug)]
pub struct TurnGate {
    shared: Arc<GateShared>,
    started: UnboundedReceiver<String>,
}

impl TurnGate {
    /// Waits until a turn has started (each turn announces itself, in order, before its first event) and returns its
    /// session (the turn request's `session_id`). Turns announce themselves even after `release_all`.
    pub async fn started(&mut self) -> String {
        self.started.recv().await.expect("the gate holds the sender, so the channel never closes")
    }

    /// Lets one turn of `session` continue: the one held now, or (remembered) the next one to start.
    pub fn release(&self, session: &str) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        *state.permits.entry(session.to_owned()).or_default() += 1;
        drop(state);
        self.shared.notify.notify_waiters();
    }

    /// Opens the gate for good: every held turn continues and later turns no longer wait.
    pub fn release_all(&self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).open = true;
        self.shared.notify.notify_waiters();
    }
}

/// A dropped gate holds nothing any more: its held turns continue.
impl Drop for TurnGate {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> String {
        format!("org/repo/t1/{id}")
    }

    fn request(id: &str, prompt: &str) -> TurnRequest {
        TurnRequest {
            session_id: session(id),
            model: "builtin".into(),
            mode: "code".into(),
            thought_level: "normal".into(),
            prompt: prompt.into(),
            ..TurnRequest::default()
        }
    }

    /// Runs a whole turn without steer and collects its events.
    async fn collect(agent: &BuiltinAgent, prompt: &str) -> (Vec<AgentEvent>, TurnEnd) {
        let (tx, mut rx) = mpsc::channel(1024);
        let (_steer_tx, steer_rx) = mpsc::unbounded_channel();
        let end = agent.run_turn(request("s1", prompt), tx, steer_rx).await;
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        (events, end)
    }

    fn text(events: &[AgentEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[actix_rt::test]
    async fn same_prompt_gives_same_events() {
        let agent = BuiltinAgent::new(Duration::ZERO);
        let (a, end_a) = collect(&agent, "Fix the flaky login test").await;
        let (b, end_b) = collect(&agent, "Fix the flaky login test").await;
        assert_eq!(a, b);
        assert_eq!(end_a, TurnEnd::Completed);
        assert_eq!(end_b, TurnEnd::Completed);
        let text = text(&a);
        assert!(text.contains("Fix the flaky login test"), "{text}");
        let words = text.split_whitespace().count();
        assert!((20..=40).contains(&words), "{words} words: {text}");
        for e in &a {
            if let AgentEvent::TextDelta { text } = e {
                assert!(text.ends_with(' ') && text.split_whitespace().count() == 1, "{text:?}");
            }
        }
        let (c, _) = collect(&agent, "Something else entirely").await;
        assert_ne!(a, c);
        // The events serialize as tagged JSON.
        let json = serde_json::to_value(&a[0]).unwrap();
        assert_eq!(json["type"], "text_delta");
        assert_eq!(serde_json::from_value::<AgentEvent>(json).unwrap(), a[0]);
    }

    #[actix_rt::test]
    async fn tool_and_edit_prompts_always_call_tools_and_change_files() {
        let agent = BuiltinAgent::new(Duration::ZERO);
        for prompt in ["use a tool", "please use the tool here", "Tool time"] {
            let (events, end) = collect(&agent, prompt).await;
            assert_eq!(end, TurnEnd::Completed);
            let call = events.iter().position(|e| matches!(e, AgentEvent::ToolCall { .. })).expect(prompt);
            match &events[call] {
                AgentEvent::ToolCall { id, name, input } => {
                    assert_eq!(id, "tool-1");
                    assert_eq!(name, "read_file");
                    let path = input["path"].as_str().unwrap();
                    assert!(path.starts_with("src/") && path.ends_with(".rs"), "{path}");
                }
                _ => unreachable!(),
            }
            assert!(matches!(&events[call + 1], AgentEvent::ToolResult { id, .. } if id == "tool-1"));
        }
        for prompt in ["edit the config", "Edit README", "please edit it"] {
            let (events, _) = collect(&agent, prompt).await;
            assert!(
                events.iter().any(|e| matches!(e, AgentEvent::FileChange { path, .. } if path.starts_with("src/"))),
                "{prompt}"
            );
        }
        // The hash makes some other prompts call tools or change files, but not all of them.
        let mut tools = 0;
        let mut files = 0;
        for i in 0..40 {
            let (events, _) = collect(&agent, &format!("prompt number {i}")).await;
            tools += events.iter().filter(|e| matches!(e, AgentEvent::ToolCall { .. })).count();
            files += events.iter().filter(|e| matches!(e, AgentEvent::FileChange { .. })).count();
        }
        assert!(tools > 0 && tools < 40, "{tools}");
        assert!(files > 0 && files < 40, "{files}");
    }

    #[actix_rt::test]
    async fn steer_mid_turn_is_reflected_in_the_rest_of_the_turn() {
        let agent = BuiltinAgent::new(Duration::from_millis(1));
        let (tx, mut rx) = mpsc::channel(1024);
        let (steer_tx, steer_rx) = mpsc::unbounded_channel();
        let mut turn = agent.run_turn(request("s1", "Refactor the parser"), tx, steer_rx);
        let mut events = Vec::new();
        let mut steered_at = None;
        let end = loop {
            tokio::select! {
                end = &mut turn => break end,
                Some(e) = rx.recv() => {
                    events.push(e);
                    if events.len() == 3 {
                        steer_tx.send("use small functions".into()).unwrap();
                        steered_at = Some(events.len());
                    }
                }
            }
        };
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        assert_eq!(end, TurnEnd::Completed);
        let after = text(&events[steered_at.unwrap()..]);
        assert!(after.contains("[steer: use small functions] "), "{after}");
        assert!(after.contains("Adjusted to guidance: use small functions."), "{after}");
    }

    /// Drives a turn until `stop` says so, then drops it; returns what was drained afterwards.
    async fn drop_turn_when(
        agent: &BuiltinAgent,
        prompt: &str,
        mut stop: impl FnMut(&[AgentEvent]) -> bool,
    ) -> (Vec<AgentEvent>, Vec<AgentEvent>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let (_steer_tx, steer_rx) = mpsc::unbounded_channel();
        let mut turn = agent.run_turn(request("s1", prompt), tx, steer_rx);
        let mut before = Vec::new();
        loop {
            // Events first, so the turn is never polled between the stopping event and the drop.
            tokio::select! {
                biased;
                Some(e) = rx.recv() => {
                    before.push(e);
                    if stop(&before) {
                        break;
                    }
                }
                end = &mut turn => panic!("the turn ended ({end:?}) before it was dropped"),
            }
        }
        drop(turn);
        let mut after = Vec::new();
        while let Some(e) = rx.recv().await {
            after.push(e);
        }
        (before, after)
    }

    #[actix_rt::test]
    async fn dropping_the_turn_future_cancels_it() {
        let agent = BuiltinAgent::new(Duration::from_millis(20));
        let (before, after) = drop_turn_when(&agent, "Rename the module", |events| events.len() == 3).await;
        assert_eq!(before.len(), 3);
        assert!(after.is_empty(), "{after:?}");
        let (full, _) = collect(&BuiltinAgent::new(Duration::ZERO), "Rename the module").await;
        assert!(full.len() > 3);

        // Cancelled while the tool call is in progress: no result ever arrives.
        let (before, after) = drop_turn_when(&agent, "use a tool on it", |events| {
            matches!(events.last(), Some(AgentEvent::ToolCall { .. }))
        })
        .await;
        assert!(matches!(before.last(), Some(AgentEvent::ToolCall { .. })));
        assert!(after.is_empty(), "{after:?}");
    }

    #[actix_rt::test]
    async fn turn_stops_when_the_receiver_is_gone() {
        let agent = BuiltinAgent::new(Duration::ZERO);
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let (_steer_tx, steer_rx) = mpsc::unbounded_channel();
        assert_eq!(agent.run_turn(request("s1", "anything"), tx, steer_rx).await, TurnEnd::Completed);
    }

    #[actix_rt::test]
    async fn gate_holds_turns_at_their_start_until_released() {
        let (agent, mut gate) = BuiltinAgent::with_gate(Duration::ZERO);
        let mut turns = Vec::new();
        let mut receivers = Vec::new();
        for id in ["a", "b"] {
            let (tx, rx) = mpsc::channel(1024);
            let (_steer_tx, steer_rx) = mpsc::unbounded_channel::<String>();
            turns.push(actix_rt::spawn(agent.run_turn(request(id, "Write docs"), tx, steer_rx)));
            receivers.push(rx);
        }
        let mut started = vec![gate.started().await, gate.started().await];
        started.sort();
        assert_eq!(started, vec![session("a"), session("b")]);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        for rx in &mut receivers {
            assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Empty)));
        }

        gate.release(&session("a"));
        let b = turns.pop().unwrap();
        assert_eq!(turns.pop().unwrap().await.unwrap(), TurnEnd::Completed);
        assert!(receivers[0].try_recv().is_ok());
        assert!(matches!(receivers[1].try_recv(), Err(mpsc::error::TryRecvError::Empty)));

        gate.release_all();
        assert_eq!(b.await.unwrap(), TurnEnd::Completed);
        assert!(matches!(receivers[1].try_recv(), Ok(AgentEvent::TextDelta { .. })));
    }

    #[actix_rt::test]
    async fn gate_remembers_a_release_before_the_turn_starts() {
        let (agent, mut gate) = BuiltinAgent::with_gate(Duration::ZERO);
        gate.release(&session("a"));
        let (tx, _rx) = mpsc::channel(1024);
        let (_steer_tx, steer_rx) = mpsc::unbounded_channel();
        assert_eq!(agent.run_turn(request("a", "Write docs"), tx, steer_rx).await, TurnEnd::Completed);
        assert_eq!(gate.started().await, session("a"));

        // The release was used up: the next turn of the session is held again.
        let (tx, mut rx) = mpsc::channel(1024);
        let (_steer_tx, steer_rx) = mpsc::unbounded_channel();
        let turn = actix_rt::spawn(agent.run_turn(request("a", "Write docs"), tx, steer_rx));
        assert_eq!(gate.started().await, session("a"));
        tokio::task::yield_now().await;
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Empty)));
        gate.release(&session("a"));
        assert_eq!(turn.await.unwrap(), TurnEnd::Completed);
    }
}
