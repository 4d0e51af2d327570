//! Webhook deliveries of [`FakeGitHub`](super::FakeGitHub): `pull_request` and `push` payloads as GitHub builds
//! them, queued in event order and POSTed one at a time by a background task with GitHub's headers and
//! `X-Hub-Signature-256`, retried a few times on connection errors and 5xx.

use std::sync::Weak;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::git::{branch_refs, ZERO_SHA};
use super::rest::{pull_json, repo_json};
use super::{fake_sha, fresh_hex, lock, Shared, State};
use crate::actors::github_data::webhook::sign;

const ATTEMPTS: u32 = 3;

/// The webhook configuration, the queue and what was delivered.
pub(super) struct Hooks {
    /// (url, secret); no deliveries while unset.
    target: Option<(String, String)>,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Taken by the first event, which starts the sender on the server's worker runtime (events are only raised
    /// while answering a request there).
    rx: Option<mpsc::UnboundedReceiver<Outgoing>>,
    state: Weak<Shared>,
    pub(super) finished: Vec<(String, String, u16)>,
}

struct Outgoing {
    url: String,
    secret: String,
    event: String,
    /// The action, or the ref of a push: what [`FakeGitHub::deliveries`](super::FakeGitHub::deliveries) reports.
    label: String,
    id: String,
    body: Vec<u8>,
}

impl Hooks {
    pub(super) fn new(state: Weak<Shared>) -> Hooks {
        let (tx, rx) = mpsc::unbounded_channel();
        Hooks { target: None, tx, rx: Some(rx), state, finished: Vec::new() }
    }

    pub(super) fn set_target(&mut self, url: &str, secret: &str) {
        self.target = (!url.is_empty()).then(|| (url.to_string(), secret.to_string()));
    }
}

/// Queues one delivery of `payload`, adding `sender`, `organization` and, when the App is installed on the owner,
/// `installation`.
/// Must run on an actix runtime (the first call starts the sender there).
fn queue(s: &mut State, event: &str, label: &str, sender: &str, mut payload: Value) {
    let Some((url, secret)) = s.hooks.target.clone() else { return };
    let id = s
        .fixture
        .members
        .iter()
        .find(|m| m.login.eq_ignore_ascii_case(sender))
        .map_or_else(|| u64::from_str_radix(&fake_sha(sender)[..8], 16).unwrap_or_default(), |m| m.id);
    let kind = if sender.ends_with("[bot]") { "Bot" } else { "User" };
    payload["sender"] = json!({"login": sender, "id": id, "type": kind});
    if let Some(installation) = s.installations.iter().find(|i| i.account_id == s.fixture.owner_id) {
        payload["installation"] = json!({"id": installation.id});
    }
    // Events of an organization's repositories name the organization, with its id (which survives renames).
    payload["organization"] = json!({"login": s.fixture.owner, "id": s.fixture.owner_id});
    let hex = fresh_hex(s, "delivery", 32);
    let id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    let out = Outgoing {
        url,
        secret,
        event: event.to_string(),
        label: label.to_string(),
        id,
        body: payload.to_string().into_bytes(),
    };
    if let Some(rx) = s.hooks.rx.take() {
        actix_rt::spawn(send_all(rx, s.hooks.state.clone()));
    }
    // The receiver lives in the sender task until the state is dropped, so this cannot fail while it matters.
    let _ = s.hooks.tx.send(out);
}

async fn send_all(mut rx: mpsc::UnboundedReceiver<Outgoing>, state: Weak<Shared>) {
    let http = match crate::integrations::http_client_builder().timeout(Duration::from_secs(10)).build() {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(error = %e, "fake GitHub: no HTTP client for webhooks");
            return;
        }
    };
    while let Some(out) = rx.recv().await {
        let status = deliver(&http, &out).await;
        let Some(state) = state.upgrade() else { return };
        lock(&state).hooks.finished.push((out.event, out.label, status));
    }
}

/// The final status of one delivery, 0 if no answer came.
async fn deliver(http: &reqwest::Client, out: &Outgoing) -> u16 {
    let signature = sign(out.secret.as_bytes(), &out.body);
    let mut status = 0;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let sent = http
            .post(&out.url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/fake")
            .header("x-github-event", &out.event)
            .header("x-github-delivery", &out.id)
            .header("x-hub-signature-256", &signature)
            .body(out.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                status = resp.status().as_u16();
                if status < 500 {
                    return status;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, url = %out.url, "fake GitHub: webhook delivery failed");
                status = 0;
            }
        }
    }
    status
}

/// A `pull_request` event for pull `number` of `repo` as it is now; `extra` (an object) adds fields such as
/// `changes` or `before`/`after`.
pub(super) fn pull_request(s: &mut State, repo: &str, number: u64, action: &str, sender: &str, extra: Value) {
    if s.hooks.target.is_none() {
        return;
    }
    let Some(r) = s.repo(&s.fixture.owner, repo) else { return };
    let Some(p) = r.pulls.iter().find(|p| p.number == number) else { return };
    let pull = pull_json(s, r, p, branch_refs(s, r).as_ref());
    let mut payload = json!({"action": action, "number": number, "pull_request": pull, "repository": repo_json(s, r)});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            payload[k] = v;
        }
    }
    queue(s, "pull_request", action, sender, payload);
}

/// One branch moved by a push or a merge.
pub(super) struct Push {
    pub(super) branch: String,
    /// [`ZERO_SHA`] for a created branch.
    pub(super) before: String,
    /// [`ZERO_SHA`] for a deleted branch.
    pub(super) after: String,
    /// As [`push_commits`](super::git::push_commits) lists them.
    pub(super) commits: Vec<Value>,
    pub(super) forced: bool,
}

/// A `push` event.
pub(super) fn push(s: &mut State, repo: &str, sender: &str, p: Push) {
    if s.hooks.target.is_none() {
        return;
    }
    let Some(r) = s.repo(&s.fixture.owner, repo) else { return };
    let full_name = format!("{}/{}", s.fixture.owner, r.name);
    let git_ref = format!("refs/heads/{}", p.branch);
    let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_string();
    let payload = json!({
        "ref": git_ref,
        "before": p.before,
        "after": p.after,
        "created": p.before == ZERO_SHA,
        "deleted": p.after == ZERO_SHA,
        "forced": p.forced,
        "base_ref": null,
        "compare": format!("https://github.com/{full_name}/compare/{}...{}", short(&p.before), short(&p.after)),
        "head_commit": p.commits.last().cloned(),
        "commits": p.commits,
        "repository": repo_json(s, r),
        "pusher": {"name": sender, "email": format!("{sender}@users.noreply.github.com")},
    });
    queue(s, "push", &git_ref, sender, payload);
}
