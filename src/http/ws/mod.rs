//! `GET /v1/ws`: WebSocket topic subscriptions (actix-ws).
//!
//! One task per connection owns its subscriptions (runtime topic channels). A send waits for the socket (actix-ws's
//! channel is bounded and the HTTP writer stops pulling when the TCP buffer is full), so the server never grows a
//! buffer per client: a subscription with `patches` reads the runtime's contiguous patches (a client behind by more
//! than the topic's patch ring gets a fresh full snapshot instead), one without reads only the latest full snapshot
//! (coalesced). A client that takes longer than `send_timeout` for one frame is dropped. Heartbeats drop clients that
//! stop answering; the session token and every subscription's membership are re-checked periodically, so sign-out or
//! removal from an organization ends access on open connections too.
//!
//! Each subscription is a connection of the topic's actor (`runtime::connection`): the caller's user id and the
//! frame's `params` go to its `before_connect` hook (the organization checks membership there), and the actor's
//! events reach the client as `event` frames in order with the topic's frames.
//!
//! Client frames: `{"type":"subscribe","topic","key","after"?,"patches"?,"params"?}`,
//! `{"type":"unsubscribe","topic","key"}`, `{"type":"ping"}`.
//! Server frames: `{"type":"{topic}Updated","key","version","snapshot"}`,
//! `{"type":"{topic}Patched","key","version","base","ops"}` (subscriptions with `patches` only),
//! `{"type":"event","topic","key","event","seq","payload"}`, `{"type":"lagged","topic","key","missed"}`,
//! `{"type":"error","code","message"}`, `{"type":"pong"}`, `{"type":"unsubscribed","topic","key"}`. Keys: `app`
//! takes none (the caller's own), otherwise `{"org"}`, `{"org","repo","task"}` (task, sandboxProcesses) or
//! `{"org","repo","task","session"}`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use bytestring::ByteString;
use serde::Deserialize;

mod splice;

use splice::{
    error_frame, error_frame_about, event_frame, lagged_frame, merged_patch_frame, patch_frame, task_frame,
    update_frame, MAX_MERGED_OPS,
};

// The key type clients send and frames carry is the typed contract's (`frames.rs`).
use super::frames::TopicKey as FrameKey;
use super::{member, Api, ApiError, Caller};
use crate::actors::validate;
use crate::actors::{organization, session, task, user, RepoKey, SessionKey, TaskKey};
use crate::runtime::Connection as TopicConnection;
use crate::runtime::{Connect, ConnectionItem, TopicFrame};

/// Largest `params` of a subscribe frame (serialised): the connection keeps them while it lasts.
const MAX_PARAMS: usize = 4 * 1024;

/// Connection limits and timers.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// How often the server pings, and re-checks the session and memberships every `recheck_every` pings.
    pub heartbeat: Duration,
    /// A client silent for this long is dropped.
    pub client_timeout: Duration,
    pub recheck_every: u32,
    /// Largest client frame; a larger one closes the connection (1009).
    pub max_frame: usize,
    pub max_subscriptions: usize,
    /// Longest wait for the socket to take one frame before the client is dropped as too slow.
    pub send_timeout: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            heartbeat: Duration::from_secs(15),
            client_timeout: Duration::from_secs(45),
            recheck_every: 2,
            max_frame: 64 * 1024,
            max_subscriptions: 256,
            send_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    topic: Option<String>,
    key: Option<FrameKey>,
    /// `subscribe`: send only snapshots with a version above this one (e.g. a create reply's `sessionVersion`), so
    /// the first frame is the first change the client has not seen.
    after: Option<u64>,
    /// `subscribe`: after the first full snapshot, send each change as a `{topic}Patched` frame (the client applies
    /// it) instead of the whole snapshot again.
    patches: Option<bool>,
    /// `subscribe`: connect params for the topic's actor.
    params: Option<serde_json::Value>,
}

/// What a subscription is to.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Target {
    App(String),
    Organization(String),
    Task(TaskKey),
    Session(SessionKey),
    Processes(TaskKey),
}

impl Target {
    fn org(&self) -> Option<&str> {
        match self {
            Target::App(_) => None,
            Target::Organization(org) => Some(org),
            Target::Task(t) | Target::Processes(t) => Some(&t.org),
            Target::Session(s) => Some(&s.org),
        }
    }

    fn topic(&self) -> &'static str {
        match self {
            Target::App(_) => user::APP_TOPIC,
            Target::Organization(_) => organization::TOPIC,
            Target::Task(_) => task::TOPIC,
            Target::Session(_) => session::TOPIC,
            Target::Processes(_) => task::processes::PROCESSES_TOPIC,
        }
    }
}

struct Sub {
    /// The key as the client names it in frames (JSON).
    key_json: String,
    channel: TopicConnection,
    /// Task subscriptions: the caller's own overlay of the task, composed into each `taskUpdated` frame.
    overlay: Option<TopicConnection>,
    /// Version of the last frame sent: the composed task frame is sent again only when it is newer.
    sent: Option<u64>,
    /// The client applies `{topic}Patched` frames.
    patches: bool,
}

/// Parses a subscribe/unsubscribe target; the caller's own user for `app`.
fn target(caller: &Caller, topic: &str, key: Option<FrameKey>) -> Result<Target, ApiError> {
    let need = |k: Option<FrameKey>| k.ok_or_else(|| ApiError::bad_request("invalid_frame", "key is required"));
    let field = |v: Option<String>, name: &str| {
        v.ok_or_else(|| ApiError::bad_request("invalid_frame", format!("key.{name} is required for topic {topic:?}")))
    };
    Ok(match topic {
        "app" => match key {
            None => Target::App(caller.user_id.clone()),
            Some(_) => return Err(ApiError::bad_request("invalid_frame", "topic app takes no key (it is your own)")),
        },
        "organization" => Target::Organization(need(key)?.org),
        "task" => {
            let k = need(key)?;
            Target::Task(RepoKey::new(&k.org, &field(k.repo, "repo")?).task(field(k.task, "task")?))
        }
        "session" => {
            let k = need(key)?;
            let task = RepoKey::new(&k.org, &field(k.repo, "repo")?).task(field(k.task, "task")?);
            Target::Session(task.session(field(k.session, "session")?))
        }
        "sandboxProcesses" => {
            let k = need(key)?;
            Target::Processes(RepoKey::new(&k.org, &field(k.repo, "repo")?).task(field(k.task, "task")?))
        }
        other => return Err(ApiError::bad_request("unknown_topic", format!("unknown topic {other:?}"))),
    })
}

fn key_json(target: &Target) -> String {
    let key = match target {
        Target::App(user) => return serde_json::json!({ "user": user }).to_string(),
        Target::Organization(org) => FrameKey { org: org.clone(), repo: None, task: None, session: None },
        Target::Task(t) | Target::Processes(t) => {
            FrameKey { org: t.org.clone(), repo: Some(t.repo.clone()), task: Some(t.task.clone()), session: None }
        }
        Target::Session(s) => FrameKey {
            org: s.org.clone(),
            repo: Some(s.repo.clone()),
            task: Some(s.task.clone()),
            session: Some(s.session.clone()),
        },
    };
    serde_json::to_string(&key).unwrap_or_default()
}

/// Checks access to `target` and connects to its topic (and, for a task, to the caller's overlay). The
/// organization's actor checks membership itself, in its `before_connect`; the actors below it do not know the
/// members, so membership is asked of the organization first.
async fn open(
    api: &Api,
    caller: &Caller,
    target: &Target,
    params: serde_json::Value,
) -> Result<(TopicConnection, Option<TopicConnection>), ApiError> {
    match target.org() {
        Some(org) if matches!(target, Target::Organization(_)) => validate::org_id("org", org)?,
        Some(org) => drop(member(api, caller, org).await?),
        None => {}
    }
    let d = &api.domain;
    let connect = |topic: &str| Connect::new(topic).caller(caller.user_id.clone()).params(params.clone());
    let conn = match target {
        Target::App(user) => d.users.connect_existing(user, connect(user::APP_TOPIC)).await,
        Target::Organization(org) => d.orgs.connect_existing(org, connect(organization::TOPIC)).await,
        Target::Task(t) => {
            d.open_task(t).await?;
            let overlay = d.users.connect_existing(&caller.user_id, connect(&user::overlay_topic(t))).await?;
            return Ok((d.tasks.connect(t, connect(task::TOPIC)).await?, Some(overlay)));
        }
        Target::Session(s) => {
            d.open_session(s).await?;
            d.sessions.connect(s, connect(session::TOPIC)).await
        }
        Target::Processes(t) => {
            d.open_task(t).await?;
            d.tasks.connect(t, connect(task::processes::PROCESSES_TOPIC)).await
        }
    };
    Ok((conn?, None))
}

enum Event {
    Incoming(Option<Result<Message, ProtocolError>>),
    Tick,
    /// A sign-out on this node that may be this connection's (or `None`: some were missed, re-check anyway).
    SignedOut(Option<(String, Option<String>)>),
    Changed(Target, Option<ConnectionItem>),
}

type Change<'a> = Pin<Box<dyn Future<Output = (Target, Option<ConnectionItem>)> + 'a>>;

/// The next frame or event of any subscription (never resolves without subscriptions). Every wait is cancel-safe: an
/// item counts as received only when its future completes.
async fn next_change(subs: &mut HashMap<Target, Sub>) -> (Target, Option<ConnectionItem>) {
    if subs.is_empty() {
        return std::future::pending().await;
    }
    let waits = subs.iter_mut().flat_map(|(t, s)| {
        let Sub { channel, overlay, patches, .. } = s;
        // A task frame composes the latest of two snapshots, so its subscriptions read full snapshots only.
        let patches = *patches && overlay.is_none();
        let main: Change<'_> = {
            let t = t.clone();
            Box::pin(async move { (t, channel.next_item(patches).await) })
        };
        let overlay = overlay.as_mut().map(|o| -> Change<'_> {
            let t = t.clone();
            Box::pin(async move { (t, o.next().await.map(|full| ConnectionItem::Frame(TopicFrame::Full(full)))) })
        });
        std::iter::once(main).chain(overlay)
    });
    futures_util::future::select_all(waits).await.0
}

struct Connection {
    api: web::Data<Api>,
    caller: Caller,
    session: Session,
    subs: HashMap<Target, Sub>,
    last_heard: Instant,
    ticks: u32,
}

/// Why a connection ends.
enum End {
    Client,
    Close(CloseReason),
    Dropped(&'static str),
}

impl Connection {
    /// Sends one frame, waiting for the socket up to the send timeout.
    async fn send(&mut self, frame: impl Into<ByteString>) -> Result<(), End> {
        match tokio::time::timeout(self.api.ws.send_timeout, self.session.text(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Client),
            Err(_) => Err(End::Dropped("too slow")),
        }
    }

    async fn run(mut self, mut stream: MessageStream) {
        let stats = &self.api.stats;
        stats.ws_sessions.fetch_add(1, Ordering::Relaxed);
        stats.ws_opened.fetch_add(1, Ordering::Relaxed);
        let mut tick = tokio::time::interval(self.api.ws.heartbeat);
        tick.tick().await;
        let mut closing = self.api.closing();
        let mut signed_out = self.api.signed_out();
        let end = loop {
            if *closing.borrow_and_update() {
                break End::Close(CloseReason {
                    code: CloseCode::Away,
                    description: Some("server shutting down".into()),
                });
            }
            let event = tokio::select! {
                _ = closing.changed() => continue,
                m = stream.recv() => Event::Incoming(m),
                _ = tick.tick() => Event::Tick,
                r = signed_out.recv() => match r {
                    Ok(who) => Event::SignedOut(Some(who)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Event::SignedOut(None),
                    // The sender lives as long as the Api, which outlives every connection.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => Event::Tick,
                },
                (t, ev) = next_change(&mut self.subs) => Event::Changed(t, ev),
            };
            let step = match event {
                Event::Incoming(m) => self.incoming(m).await,
                Event::Tick => self.heartbeat().await,
                Event::SignedOut(who) => {
                    let mine = who.is_none_or(|(user, session)| {
                        user == self.caller.user_id && session.is_none_or(|s| s == self.caller.session_id)
                    });
                    if mine {
                        self.recheck().await
                    } else {
                        Ok(())
                    }
                }
                Event::Changed(t, ev) => self.changed(t, ev).await,
            };
            if let Err(end) = step {
                break end;
            }
        };
        let stats = &self.api.stats;
        stats.ws_sessions.fetch_sub(1, Ordering::Relaxed);
        let reason = match end {
            End::Client => None,
            End::Close(reason) => Some(reason),
            End::Dropped(why) => {
                stats.ws_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(user = %self.caller.user_id, why, "WebSocket client dropped");
                Some(CloseReason { code: CloseCode::Away, description: Some(why.to_owned()) })
            }
        };
        if let Some(reason) = reason {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.session.clone().close(Some(reason))).await;
        }
    }

    async fn incoming(&mut self, m: Option<Result<Message, ProtocolError>>) -> Result<(), End> {
        self.last_heard = Instant::now();
        match m {
            None | Some(Ok(Message::Close(_))) => Err(End::Client),
            Some(Ok(Message::Text(text))) => self.frame(&text).await,
            Some(Ok(Message::Ping(bytes))) => self.session.pong(&bytes).await.map_err(|_| End::Client),
            Some(Ok(Message::Pong(_) | Message::Nop)) => Ok(()),
            Some(Ok(Message::Binary(_) | Message::Continuation(_))) => {
                let e = ApiError::bad_request("invalid_frame", "send JSON text frames");
                self.send(error_frame(&e)).await
            }
            Some(Err(ProtocolError::Overflow)) => {
                let why = format!("frame larger than {} bytes", self.api.ws.max_frame);
                self.api.stats.ws_dropped.fetch_add(1, Ordering::Relaxed);
                Err(End::Close(CloseReason { code: CloseCode::Size, description: Some(why) }))
            }
            Some(Err(e)) => {
                Err(End::Close(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) }))
            }
        }
    }

    async fn frame(&mut self, text: &str) -> Result<(), End> {
        let f = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => f,
            Err(e) => return self.send(error_frame(&ApiError::bad_request("invalid_frame", e.to_string()))).await,
        };
        // An error about a subscription names its topic and key, so a client with several pending can tell which.
        let mut about = serde_json::Map::new();
        if let Some(topic) = &f.topic {
            about.insert("topic".into(), topic.as_str().into());
        }
        if let Some(key) = &f.key {
            about.insert("key".into(), serde_json::to_value(key).unwrap_or_default());
        }
        let reply = match (f.kind.as_str(), f.topic.as_deref()) {
            ("ping", _) => return self.send(r#"{"type":"pong"}"#.to_owned()).await,
            ("subscribe" | "unsubscribe", None) => Err(ApiError::bad_request("invalid_frame", "topic is required")),
            ("subscribe", Some(topic)) => match (target(&self.caller, topic, f.key), params(f.params)) {
                (Ok(t), Ok(params)) => self.subscribe(t, f.after, f.patches.unwrap_or(false), params).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            ("unsubscribe", Some(topic)) => match target(&self.caller, topic, f.key) {
                Ok(t) => {
                    let frame = format!(r#"{{"type":"unsubscribed","topic":"{}","key":{}}}"#, t.topic(), key_json(&t));
                    self.subs.remove(&t);
                    return self.send(frame).await;
                }
                Err(e) => Err(e),
            },
            (other, _) => Err(ApiError::bad_request("invalid_frame", format!("unknown frame type {other:?}"))),
        };
        match reply {
            Ok(()) => Ok(()),
            Err(e) => self.send(error_frame_about(&e, about)).await,
        }
    }

    /// Subscribing again to the same target resends its current snapshot (or waits for one newer than `after`).
    async fn subscribe(
        &mut self,
        t: Target,
        after: Option<u64>,
        patches: bool,
        params: serde_json::Value,
    ) -> Result<(), ApiError> {
        if !self.subs.contains_key(&t) && self.subs.len() >= self.api.ws.max_subscriptions {
            let max = self.api.ws.max_subscriptions;
            return Err(ApiError::bad_request("too_many_subscriptions", format!("at most {max} per connection")));
        }
        let (mut channel, overlay) = open(&self.api, &self.caller, &t, params).await?;
        // The first frame of a fresh channel is the current snapshot: the loop sends it like any change. `after`
        // counts as received, so the first frame is a full snapshot newer than it; a task frame's version is the sum
        // of its two halves', so there it is compared with what the loop composes.
        let sent = match (&overlay, after) {
            (None, Some(after)) => {
                channel.skip_through(after);
                None
            }
            _ => after,
        };
        self.subs.insert(t.clone(), Sub { key_json: key_json(&t), channel, overlay, sent, patches });
        Ok(())
    }

    async fn changed(&mut self, t: Target, item: Option<ConnectionItem>) -> Result<(), End> {
        let Some(item) = item else {
            // The runtime is shutting down: its topic channels are gone.
            return Err(End::Close(CloseReason {
                code: CloseCode::Restart,
                description: Some("server restarting".into()),
            }));
        };
        let Some(sub) = self.subs.get_mut(&t) else { return Ok(()) };
        let frame = match item {
            ConnectionItem::Frame(frame) => frame,
            ConnectionItem::Event { seq, event } => {
                let frame = event_frame(t.topic(), &sub.key_json, seq, &event);
                self.api.stats.ws_frames.fetch_add(1, Ordering::Relaxed);
                return self.send(frame).await;
            }
            ConnectionItem::Lagged { missed } => {
                // The snapshot that follows must go out even if its version was sent before.
                sub.sent = None;
                let frame = lagged_frame(t.topic(), &sub.key_json, missed);
                return self.send(frame).await;
            }
        };
        let (version, frame) = match (&sub.overlay, frame) {
            // Every subscriber of this event names it with the same key: one frame, shared.
            (None, TopicFrame::Full(ev)) => {
                let shared = ev.memo(|| ByteString::from(update_frame(&sub.key_json, &ev)));
                (ev.version, shared.unwrap_or_else(|| ByteString::from(update_frame(&sub.key_json, &ev))))
            }
            (None, TopicFrame::Patch(p)) => {
                // Behind by more than this patch: take what else is ready (or the full snapshot that replaced it).
                let mut behind = vec![p];
                let mut bytes = behind[0].ops.get().len();
                let mut full = None;
                while bytes < MAX_MERGED_OPS {
                    match sub.channel.try_next_frame() {
                        Some(TopicFrame::Patch(next)) => {
                            bytes += next.ops.get().len();
                            behind.push(next);
                        }
                        Some(TopicFrame::Full(ev)) => {
                            full = Some(ev);
                            break;
                        }
                        None => break,
                    }
                }
                match (full, behind.as_slice()) {
                    (Some(ev), _) => {
                        let shared = ev.memo(|| ByteString::from(update_frame(&sub.key_json, &ev)));
                        (ev.version, shared.unwrap_or_else(|| ByteString::from(update_frame(&sub.key_json, &ev))))
                    }
                    // In step with the topic: the frame every such subscriber shares.
                    (None, [p]) => {
                        let shared = p.memo(|| ByteString::from(patch_frame(&sub.key_json, p)));
                        (p.version, shared.unwrap_or_else(|| ByteString::from(patch_frame(&sub.key_json, p))))
                    }
                    (None, patches) => {
                        let last = patches.last().map_or(0, |p| p.version);
                        (last, ByteString::from(merged_patch_frame(&sub.key_json, patches)))
                    }
                }
            }
            // Either half may have changed: compose the latest of both, once both exist.
            (Some(overlay), _) => match (sub.channel.latest(), overlay.latest()) {
                (Some(detail), Some(overlay)) => {
                    (detail.version + overlay.version, ByteString::from(task_frame(&sub.key_json, &detail, &overlay)))
                }
                _ => return Ok(()),
            },
        };
        if sub.sent.is_some_and(|sent| version <= sent) {
            return Ok(());
        }
        sub.sent = Some(version);
        self.send(frame).await?;
        self.api.stats.ws_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), End> {
        if self.last_heard.elapsed() > self.api.ws.client_timeout {
            return Err(End::Dropped("no heartbeat"));
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(self.api.ws.recheck_every.max(1)) {
            self.recheck().await?;
        }
        match tokio::time::timeout(self.api.ws.send_timeout, self.session.ping(b"")).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Client),
            Err(_) => Err(End::Dropped("too slow")),
        }
    }

    /// Ends the connection if its session was revoked or expired; drops subscriptions the caller lost access to.
    async fn recheck(&mut self) -> Result<(), End> {
        match self.caller.still_valid(&self.api).await {
            Ok(true) => {}
            Ok(false) => {
                let e = ApiError::unauthenticated("session expired or signed out");
                self.send(error_frame(&e)).await?;
                return Err(End::Close(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("signed out".into()),
                }));
            }
            // The directory is busy or restarting: keep the connection; the next recheck decides.
            Err(_) => return Ok(()),
        }
        let orgs: Vec<String> = self.subs.keys().filter_map(|t| t.org()).map(str::to_owned).collect();
        let mut lost = Vec::new();
        for org in dedup(orgs) {
            if let Err(e) = member(&self.api, &self.caller, &org).await {
                if e.status.as_u16() == 403 || e.status.as_u16() == 404 {
                    lost.push((org, e));
                }
            }
        }
        for (org, e) in lost {
            self.subs.retain(|t, _| t.org() != Some(org.as_str()));
            self.send(error_frame(&e)).await?;
        }
        Ok(())
    }
}

/// A subscribe frame's connect params: any JSON up to [`MAX_PARAMS`] bytes (`null` without).
fn params(params: Option<serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    let params = params.unwrap_or_default();
    let size = serde_json::to_string(&params).map_or(0, |s| s.len());
    if size > MAX_PARAMS {
        return Err(ApiError::bad_request("invalid_frame", format!("params over {MAX_PARAMS} bytes ({size})")));
    }
    Ok(params)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// `GET /v1/ws`: the WebSocket of live topic updates (frames: docs/API.md, "WebSocket"). Upgrades an authenticated
/// request (401 before the upgrade otherwise).
#[utoipa::path(get, path = "/v1/ws", tag = "events", operation_id = "websocket",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 403, response = super::openapi::Forbidden),
    ))]
pub(super) async fn ws(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    let caller = Caller::from_request_async(&req).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request("not_websocket", format!("expected a WebSocket upgrade: {e}")))?;
    let stream = stream.max_frame_size(api.ws.max_frame);
    let conn = Connection { api, caller, session, subs: HashMap::new(), last_heard: Instant::now(), ticks: 0 };
    actix_web::rt::spawn(conn.run(stream));
    Ok(response)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Event as TopicEventMsg, TopicEvent};

    fn event(topic: &str, version: u64, json: &str) -> TopicEvent {
        let raw = serde_json::value::RawValue::from_string(json.into()).unwrap();
        TopicEvent::new("test", "k".into(), topic.into(), version, raw.into())
    }

    #[test]
    fn hand_built_frames_read_as_the_typed_contract() {
        use crate::http::frames::{AnyKey, ServerFrame, TopicKey};
        let session = Target::Session(RepoKey::new("acme", "r1").task("t1").session("s1"));
        let hub = crate::runtime::topic::TopicHub::default();
        let mut sub = hub.subscribe("test", "k", "session");
        hub.publish(event("session", 1, r#"{"partialText":""}"#));
        assert!(futures_util::FutureExt::now_or_never(sub.next_frame()).flatten().is_some());
        let ops = [crate::runtime::PatchOp::append("/partialText", "hi")];
        hub.publish_patch("test", "k", "session", 2, &ops).unwrap();
        let Some(crate::runtime::TopicFrame::Patch(p)) = sub.try_next_frame() else { panic!("a patch") };
        let frame: ServerFrame = serde_json::from_str(&patch_frame(&key_json(&session), &p)).unwrap();
        let ServerFrame::SessionPatched { key, version, base, ops: parsed } = frame else { panic!("{frame:?}") };
        assert_eq!((key, version, base), (TopicKey::session("acme", "r1", "t1", "s1"), 2, 1));
        assert_eq!(parsed, ops);

        let mut about = serde_json::Map::new();
        about.insert("topic".into(), "organization".into());
        about.insert("key".into(), serde_json::to_value(TopicKey::org("acme")).unwrap());
        let e = ApiError::forbidden("not a member");
        let frame: ServerFrame = serde_json::from_str(&error_frame_about(&e, about)).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Error {
                code: "forbidden".into(),
                message: "not a member".into(),
                topic: Some("organization".into()),
                key: Some(TopicKey::org("acme")),
            }
        );
        let app: AnyKey = serde_json::from_str(&key_json(&Target::App("u1".into()))).unwrap();
        assert_eq!(app, AnyKey::App(crate::http::frames::AppKey { user: "u1".into() }));
    }

    #[test]
    fn event_and_lag_frames_read_as_the_typed_contract() {
        use crate::http::frames::{AnyKey, ServerFrame, TopicKey, TopicName};
        let task = Target::Task(RepoKey::new("acme", "r1").task("t1"));
        let payload = serde_json::value::to_raw_value(&serde_json::json!({ "kind": "task.pushed" })).unwrap();
        let ev =
            TopicEventMsg { topic: "task".into(), name: "gitOperation".into(), payload: payload.into(), version: 3 };
        let frame: ServerFrame = serde_json::from_str(&event_frame(task.topic(), &key_json(&task), 7, &ev)).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Event {
                topic: TopicName::Task,
                key: AnyKey::Topic(TopicKey::task("acme", "r1", "t1")),
                event: "gitOperation".into(),
                seq: 7,
                payload: serde_json::json!({ "kind": "task.pushed" }),
            }
        );
        let app = Target::App("u1".into());
        let frame: ServerFrame = serde_json::from_str(&lagged_frame(app.topic(), &key_json(&app), 12)).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Lagged {
                topic: TopicName::App,
                key: AnyKey::App(crate::http::frames::AppKey { user: "u1".into() }),
                missed: 12
            }
        );
    }

    #[test]
    fn connect_params_are_bounded() {
        assert_eq!(params(None).unwrap(), serde_json::Value::Null);
        assert!(params(Some(serde_json::json!({ "a": "x".repeat(100) }))).is_ok());
        let e = params(Some(serde_json::json!("x".repeat(MAX_PARAMS)))).unwrap_err();
        assert_eq!(e.code, "invalid_frame");
    }
}
