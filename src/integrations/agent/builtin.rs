//! The built-in agent: deterministic, no network. Its reply is derived from the prompt (same prompt, same events,
//! apart from steer), streamed one word per `TextDelta` with `pace` between deltas. With a workspace (`cwd`) it works
//! on real files: its tool calls (`list_directory`, `read_file`) really run there, and a prompt asking for a change
//! ("edit", "add", "fix", "create", ... or, now and then, by a stable hash of the prompt) appends lines derived from
//! the prompt to a file of the workspace (one the prompt names, else one picked by the hash; "create" makes a new
//! file), so its `FileChange` items are exactly the diff it made. Without a workspace it changes nothing and says so.
//! [`TurnGate`] lets tests hold turns at their start.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::mpsc::{self, Sender, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use super::{AgentBackend, AgentEvent, TurnEnd, TurnRequest};

/// The id of the (single) tool call of a turn.
const TOOL_ID: &str = "tool-1";

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
            run(pace, &request.prompt, request.cwd.map(PathBuf::from), events, steer).await
        }
        .boxed()
    }
}

/// One step of a planned turn.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Word(String),
    /// A tool call: `list_directory` of the workspace root, or `read_file` of the file the turn works on.
    Tool,
    /// The change the prompt asks for.
    Edit,
}

/// 64-bit FNV-1a: stable across runs and platforms (unlike std's randomly seeded hasher).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn words(text: &str) -> impl Iterator<Item = Step> + '_ {
    text.split_whitespace().map(|w| Step::Word(format!("{w} ")))
}

/// Words that ask for a change.
const CHANGE_WORDS: [&str; 10] =
    ["edit", "add", "fix", "create", "update", "write", "implement", "change", "refactor", "rename"];

/// The first words of the prompt, for the reply and the lines the agent writes.
fn summary(prompt: &str) -> String {
    let summary: Vec<&str> = prompt.split_whitespace().take(SUMMARY_WORDS).collect();
    let summary = summary.join(" ");
    let summary = summary.trim_end_matches(|c: char| c.is_ascii_punctuation());
    if summary.is_empty() {
        "the request".to_owned()
    } else {
        summary.to_owned()
    }
}

/// The deterministic steps of a turn for `prompt`.
fn plan(prompt: &str) -> Vec<Step> {
    let hash = fnv1a(prompt);
    let lower = prompt.to_lowercase();
    let tool = lower.contains("tool") || hash.is_multiple_of(3);
    let edit = CHANGE_WORDS.iter().any(|w| lower.split(|c: char| !c.is_alphanumeric()).any(|x| x == *w))
        || (hash >> 8).is_multiple_of(4);

    let mut steps: Vec<Step> = Vec::new();
    steps.extend(words(OPENINGS[(hash % OPENINGS.len() as u64) as usize]));
    steps.extend(words(&format!("{}.", summary(prompt))));
    steps.extend(words("First, I will read the relevant code to understand the current behaviour."));
    if tool {
        steps.push(Step::Tool);
    }
    steps.extend(words("Then I will make the smallest change that addresses it and check the result."));
    if edit {
        steps.push(Step::Edit);
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
    cwd: Option<PathBuf>,
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
            Step::Tool => {
                let (name, input) = match &cwd {
                    Some(dir) => match target_file(dir, prompt) {
                        Target::Existing(path) => ("read_file", serde_json::json!({ "path": path })),
                        Target::New(_) => ("list_directory", serde_json::json!({ "path": "." })),
                    },
                    None => ("list_directory", serde_json::json!({ "path": "." })),
                };
                let call = AgentEvent::ToolCall { id: TOOL_ID.to_owned(), name: name.to_owned(), input: input.clone() };
                if events.send(call).await.is_err() {
                    return TurnEnd::Completed;
                }
                // The tool call is in progress: dropping the turn future here cancels it.
                pause(pace).await;
                let output = match &cwd {
                    Some(dir) => run_tool(dir, name, input["path"].as_str().unwrap_or(".")),
                    None => "no workspace: there are no files to look at".to_owned(),
                };
                if events.send(AgentEvent::ToolResult { id: TOOL_ID.to_owned(), output }).await.is_err() {
                    return TurnEnd::Completed;
                }
            }
            Step::Edit => {
                let Some(dir) = &cwd else {
                    // Said word by word like the rest of the reply.
                    let note: Vec<Step> = words("(No workspace, so no files were changed.)").collect();
                    for step in note.into_iter().rev() {
                        steps.push_front(step);
                    }
                    continue;
                };
                let event = match edit(dir, prompt) {
                    Ok((path, added, removed)) => AgentEvent::FileChange { path, added, removed },
                    Err(e) => AgentEvent::TextDelta { text: format!("(The change failed: {e}.) ") },
                };
                if events.send(event).await.is_err() {
                    return TurnEnd::Completed;
                }
            }
        }
    }
    TurnEnd::Completed
}

/// The file a turn works on.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Existing(String),
    New(String),
}

/// Files the agent may look at and change: not under `.git`, not too large, text only, sorted.
fn workspace_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" {
                continue;
            }
            let path = rel.join(&name);
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let small = entry.metadata().is_ok_and(|m| m.len() <= 256 * 1024);
                    if small && is_text(&dir.join(&path)) {
                        out.push(path.to_string_lossy().into_owned());
                    }
                }
                _ => {}
            }
        }
        if out.len() > 10_000 {
            break;
        }
    }
    out.sort();
    out
}

fn is_text(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| !b[..b.len().min(8000)].contains(&0) && std::str::from_utf8(&b).is_ok())
}

/// The file the prompt names (a word that is a path of the workspace), a new file if it asks to create one, else a
/// file picked by the prompt's hash (or a new `NOTES.md` in an empty workspace).
fn target_file(dir: &Path, prompt: &str) -> Target {
    let files = workspace_files(dir);
    let named = prompt
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| matches!(c, '`' | '"' | '\'' | ',' | ';' | ':' | '(' | ')')))
        .map(|w| w.trim_end_matches(['.', ',', '!', '?']))
        .find(|w| files.iter().any(|f| f == w));
    if let Some(path) = named {
        return Target::Existing(path.to_owned());
    }
    let lower = prompt.to_lowercase();
    if lower.split(|c: char| !c.is_alphanumeric()).any(|w| w == "create") {
        let slug: String = summary(prompt)
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .split('-')
            .filter(|p| !p.is_empty())
            .take(6)
            .collect::<Vec<_>>()
            .join("-");
        let slug = if slug.is_empty() { "note".to_owned() } else { slug };
        return Target::New(format!("notes/{slug}.md"));
    }
    if files.is_empty() {
        return Target::New("NOTES.md".to_owned());
    }
    Target::Existing(files[((fnv1a(prompt) >> 16) % files.len() as u64) as usize].clone())
}

fn run_tool(dir: &Path, name: &str, path: &str) -> String {
    if name == "read_file" {
        match std::fs::read_to_string(dir.join(path)) {
            Ok(text) => format!("read {} lines of {path}", text.lines().count()),
            Err(e) => format!("cannot read {path}: {e}"),
        }
    } else {
        match std::fs::read_dir(dir.join(path)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".git")
                    .collect();
                names.sort();
                format!("{} entries: {}", names.len(), names.join(", "))
            }
            Err(e) => format!("cannot list {path}: {e}"),
        }
    }
}

/// The comment marker for lines added to `path`.
fn comment_prefix(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or_default();
    match ext {
        "rs" | "js" | "ts" | "tsx" | "jsx" | "go" | "c" | "h" | "cc" | "cpp" | "java" | "kt" | "swift" | "scala" => {
            "// "
        }
        "py" | "sh" | "rb" | "toml" | "yml" | "yaml" | "pl" | "r" | "conf" | "ini" => "# ",
        "sql" | "lua" | "hs" => "-- ",
        "html" | "xml" | "svg" => "<!-- ",
        _ => "",
    }
}

/// Appends the lines the prompt asks for to the target file. Returns (path, lines added, lines removed) as git
/// counts them.
fn edit(dir: &Path, prompt: &str) -> std::io::Result<(String, u32, u32)> {
    let (path, existing) = match target_file(dir, prompt) {
        Target::Existing(p) => {
            let text = std::fs::read_to_string(dir.join(&p))?;
            (p, Some(text))
        }
        Target::New(p) => {
            let text = std::fs::read_to_string(dir.join(&p)).ok();
            (p, text)
        }
    };
    let prefix = comment_prefix(&path);
    let suffix = if prefix == "<!-- " { " -->" } else { "" };
    let count = 1 + (fnv1a(prompt) >> 32) % 3;
    let summary = summary(prompt);
    let mut added_text = String::new();
    for i in 1..=count {
        added_text.push_str(&format!("{prefix}foundry: {summary} ({i}/{count}){suffix}\n"));
    }
    let (mut added, mut removed) = (count as u32, 0);
    let mut text = existing.unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        // The last line gains its newline: git counts it as removed and added again.
        text.push('\n');
        added += 1;
        removed += 1;
    }
    text.push_str(&added_text);
    let full = dir.join(&path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(full, text)?;
    Ok((path, added, removed))
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
        assert!((20..=48).contains(&words), "{words} words: {text}");
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

    /// A workspace with a few files.
    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "pub fn hello() {}\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "# Demo\nNo newline at the end").unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), "[core]\n").unwrap();
        dir
    }

    async fn collect_in(agent: &BuiltinAgent, prompt: &str, cwd: &Path) -> Vec<AgentEvent> {
        let (tx, mut rx) = mpsc::channel(1024);
        let (_steer_tx, steer_rx) = mpsc::unbounded_channel();
        let request = TurnRequest { cwd: Some(cwd.to_string_lossy().into_owned()), ..request("s1", prompt) };
        assert_eq!(agent.run_turn(request, tx, steer_rx).await, TurnEnd::Completed);
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    }

    #[actix_rt::test]
    async fn tools_really_run_and_edits_really_change_the_named_file() {
        let agent = BuiltinAgent::new(Duration::ZERO);
        let ws = workspace();
        let events = collect_in(&agent, "use a tool to edit src/lib.rs please", ws.path()).await;
        let call = events.iter().position(|e| matches!(e, AgentEvent::ToolCall { .. })).unwrap();
        assert!(matches!(&events[call], AgentEvent::ToolCall { name, input, .. }
            if name == "read_file" && input["path"] == "src/lib.rs"));
        assert!(
            matches!(&events[call + 1], AgentEvent::ToolResult { output, .. } if output == "read 1 lines of src/lib.rs")
        );
        let (path, added, removed) = events
            .iter()
            .find_map(|e| match e {
                AgentEvent::FileChange { path, added, removed } => Some((path.clone(), *added, *removed)),
                _ => None,
            })
            .expect("a file change");
        assert_eq!(path, "src/lib.rs");
        let text = std::fs::read_to_string(ws.path().join("src/lib.rs")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "pub fn hello() {}");
        assert_eq!((lines.len() - 1) as u32, added);
        assert_eq!(removed, 0);
        assert!(lines[1].starts_with("// foundry: use a tool to edit src/lib.rs please"), "{text}");

        // A file without a final newline: git counts its last line as changed.
        let events = collect_in(&agent, "fix README.md", ws.path()).await;
        assert!(events
            .iter()
            .any(|e| matches!(e, AgentEvent::FileChange { path, removed: 1, .. } if path == "README.md")));
        // "create" makes a new file; the tool lists the directory then.
        let events = collect_in(&agent, "create a tool guide", ws.path()).await;
        assert!(events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolResult { output, .. } if output.contains("README.md"))));
        assert!(events
            .iter()
            .any(|e| matches!(e, AgentEvent::FileChange { path, .. } if path == "notes/create-a-tool-guide.md")));
        assert!(ws.path().join("notes/create-a-tool-guide.md").exists());
        // Nothing under .git is ever touched.
        assert_eq!(std::fs::read_to_string(ws.path().join(".git/config")).unwrap(), "[core]\n");
    }

    #[actix_rt::test]
    async fn without_a_workspace_nothing_is_changed_or_claimed() {
        let agent = BuiltinAgent::new(Duration::ZERO);
        for prompt in ["use a tool", "please edit it", "Edit README"] {
            let (events, end) = collect(&agent, prompt).await;
            assert_eq!(end, TurnEnd::Completed);
            assert!(!events.iter().any(|e| matches!(e, AgentEvent::FileChange { .. })), "{prompt}");
        }
        let (events, _) = collect(&agent, "use a tool").await;
        assert!(events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolResult { output, .. } if output.starts_with("no workspace"))));
        // The hash makes some other prompts call tools or edit, but not all of them.
        let mut tools = 0;
        for i in 0..40 {
            let (events, _) = collect(&agent, &format!("prompt number {i}")).await;
            tools += events.iter().filter(|e| matches!(e, AgentEvent::ToolCall { .. })).count();
        }
        assert!(tools > 0 && tools < 40, "{tools}");
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
