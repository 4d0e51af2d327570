//! The WebSocket's frames as types (`GET /v1/ws`; docs/API.md, "WebSocket"): what a client sends ([`ClientFrame`])
//! and what the server sends ([`ServerFrame`]), with a typed snapshot per topic.
//!
//! The connection (`ws/`) splices already-serialised snapshots and patches into its frames instead of serialising
//! these types per subscriber (one shared buffer per change, whatever the number of subscribers); these types are the
//! contract those frames follow: the OpenAPI document's components and the TypeScript types are generated from them,
//! the Rust client parses frames into them, and `ws/`'s tests parse every frame it builds as a [`ServerFrame`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::domain::TaskView;
use crate::actors::organization::OrganizationSnapshot;
use crate::actors::session::SessionDetail;
use crate::actors::task::processes::ProcessesSnapshot;
use crate::actors::user::AppSnapshot;
use crate::runtime::PatchOp;

/// A topic's key as frames name it: `{org}` (organization), `{org, repo, task}` (task, sandboxProcesses) or
/// `{org, repo, task, session}` (session). `app` takes none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicKey {
    pub org: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl TopicKey {
    pub fn org(org: impl Into<String>) -> Self {
        TopicKey { org: org.into(), repo: None, task: None, session: None }
    }

    pub fn task(org: impl Into<String>, repo: impl Into<String>, task: impl Into<String>) -> Self {
        TopicKey { org: org.into(), repo: Some(repo.into()), task: Some(task.into()), session: None }
    }

    pub fn session(
        org: impl Into<String>,
        repo: impl Into<String>,
        task: impl Into<String>,
        session: impl Into<String>,
    ) -> Self {
        TopicKey { session: Some(session.into()), ..TopicKey::task(org, repo, task) }
    }
}

/// The key of an `app` frame: the caller's own user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppKey {
    pub user: String,
}

/// The key in an `unsubscribed` frame: any topic's (`app`'s names the caller).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AnyKey {
    Topic(TopicKey),
    App(AppKey),
}

/// The topics a connection may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum TopicName {
    /// The caller's own `app` snapshot (no key).
    App,
    Organization,
    /// The task detail with the caller's overlay (always full snapshots).
    Task,
    Session,
    /// The task's sandbox processes (always full snapshots).
    SandboxProcesses,
}

impl TopicName {
    /// The name frames use (`sessionUpdated` is `session` + `Updated`).
    pub fn as_str(self) -> &'static str {
        match self {
            TopicName::App => "app",
            TopicName::Organization => "organization",
            TopicName::Task => "task",
            TopicName::Session => "session",
            TopicName::SandboxProcesses => "sandboxProcesses",
        }
    }
}

/// What a client sends (JSON text, at most 64 KiB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientFrame {
    /// Starts (or restarts: the current snapshot is sent again) a subscription.
    Subscribe {
        topic: TopicName,
        /// Every topic but `app` needs one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<TopicKey>,
        /// Only snapshots with a version above this one (e.g. a create reply's `sessionVersion`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// After the first full snapshot, changes as `{topic}Patched` frames.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patches: Option<bool>,
        /// Connect params (JSON, at most 4 KiB serialised) for the topic's actor; none of today's topics reads any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<serde_json::Value>,
    },
    Unsubscribe {
        topic: TopicName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<TopicKey>,
    },
    Ping,
}

/// What the server sends: per topic a full snapshot (`{topic}Updated`) or a change to the one the client holds
/// (`{topic}Patched`, only on subscriptions with `patches`), and the connection's own frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerFrame {
    AppUpdated {
        key: AppKey,
        version: u64,
        snapshot: AppSnapshot,
    },
    AppPatched {
        key: AppKey,
        version: u64,
        base: u64,
        ops: Vec<PatchOp>,
    },
    OrganizationUpdated {
        key: TopicKey,
        version: u64,
        snapshot: OrganizationSnapshot,
    },
    OrganizationPatched {
        key: TopicKey,
        version: u64,
        /// The version the operations apply to: the one the client holds.
        base: u64,
        ops: Vec<PatchOp>,
    },
    /// The task detail with the viewer's overlay; its version is the sum of the two halves' versions.
    TaskUpdated {
        key: TopicKey,
        version: u64,
        snapshot: Box<TaskView>,
    },
    TaskPatched {
        key: TopicKey,
        version: u64,
        base: u64,
        ops: Vec<PatchOp>,
    },
    SessionUpdated {
        key: TopicKey,
        version: u64,
        snapshot: SessionDetail,
    },
    SessionPatched {
        key: TopicKey,
        version: u64,
        base: u64,
        ops: Vec<PatchOp>,
    },
    SandboxProcessesUpdated {
        key: TopicKey,
        version: u64,
        snapshot: ProcessesSnapshot,
    },
    SandboxProcessesPatched {
        key: TopicKey,
        version: u64,
        base: u64,
        ops: Vec<PatchOp>,
    },
    /// A refusal (docs/API.md lists the codes); about a subscription when `topic` is set. The connection stays
    /// usable, except after `unauthenticated` (closed with 1008).
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// The key of the subscribe or unsubscribe frame it answers, as sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<TopicKey>,
    },
    Pong,
    Unsubscribed {
        topic: TopicName,
        key: AnyKey,
    },
    /// Something that happened, told once rather than kept in the snapshot (docs/API.md, "Events"). Comes after the
    /// snapshot or patch frame of the change it belongs to.
    Event {
        topic: TopicName,
        key: AnyKey,
        /// The event's name (per topic: `task` has `gitOperation`).
        event: String,
        /// Counts the events of this subscription: 1, 2, ...; after a `lagged` frame it is higher by `missed` + 1.
        seq: u64,
        payload: serde_json::Value,
    },
    /// The client read too slowly and `missed` events of this subscription were dropped; a full `{topic}Updated`
    /// follows.
    Lagged {
        topic: TopicName,
        key: AnyKey,
        missed: u64,
    },
}

impl ServerFrame {
    /// The topic a snapshot or patch frame is about.
    pub fn topic(&self) -> Option<TopicName> {
        use ServerFrame::*;
        Some(match self {
            AppUpdated { .. } | AppPatched { .. } => TopicName::App,
            OrganizationUpdated { .. } | OrganizationPatched { .. } => TopicName::Organization,
            TaskUpdated { .. } | TaskPatched { .. } => TopicName::Task,
            SessionUpdated { .. } | SessionPatched { .. } => TopicName::Session,
            SandboxProcessesUpdated { .. } | SandboxProcessesPatched { .. } => TopicName::SandboxProcesses,
            Error { .. } | Pong | Unsubscribed { .. } | Event { .. } | Lagged { .. } => return None,
        })
    }

    /// The topic key of a snapshot or patch frame (`None` for `app`, whose key is the caller).
    pub fn key(&self) -> Option<&TopicKey> {
        use ServerFrame::*;
        match self {
            OrganizationUpdated { key, .. }
            | OrganizationPatched { key, .. }
            | TaskUpdated { key, .. }
            | TaskPatched { key, .. }
            | SessionUpdated { key, .. }
            | SessionPatched { key, .. }
            | SandboxProcessesUpdated { key, .. }
            | SandboxProcessesPatched { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The topic version a snapshot or patch frame brings the client to.
    pub fn version(&self) -> Option<u64> {
        use ServerFrame::*;
        match self {
            AppUpdated { version, .. }
            | AppPatched { version, .. }
            | OrganizationUpdated { version, .. }
            | OrganizationPatched { version, .. }
            | TaskUpdated { version, .. }
            | TaskPatched { version, .. }
            | SessionUpdated { version, .. }
            | SessionPatched { version, .. }
            | SandboxProcessesUpdated { version, .. }
            | SandboxProcessesPatched { version, .. } => Some(*version),
            _ => None,
        }
    }

    /// A patch frame's base version and operations.
    pub fn patch(&self) -> Option<(u64, &[PatchOp])> {
        use ServerFrame::*;
        match self {
            AppPatched { base, ops, .. }
            | OrganizationPatched { base, ops, .. }
            | TaskPatched { base, ops, .. }
            | SessionPatched { base, ops, .. }
            | SandboxProcessesPatched { base, ops, .. } => Some((*base, ops)),
            _ => None,
        }
    }

    /// A snapshot frame's snapshot, as JSON.
    pub fn snapshot_json(&self) -> Option<serde_json::Result<serde_json::Value>> {
        use ServerFrame::*;
        Some(match self {
            AppUpdated { snapshot, .. } => serde_json::to_value(snapshot),
            OrganizationUpdated { snapshot, .. } => serde_json::to_value(snapshot),
            TaskUpdated { snapshot, .. } => serde_json::to_value(snapshot),
            SessionUpdated { snapshot, .. } => serde_json::to_value(snapshot),
            SandboxProcessesUpdated { snapshot, .. } => serde_json::to_value(snapshot),
            _ => return None,
        })
    }
}

/// A topic's snapshot type: what its `{topic}Updated` frames carry and its patches apply to.
pub trait TopicSnapshot: Serialize + serde::de::DeserializeOwned {
    const TOPIC: TopicName;
}

impl TopicSnapshot for AppSnapshot {
    const TOPIC: TopicName = TopicName::App;
}

impl TopicSnapshot for OrganizationSnapshot {
    const TOPIC: TopicName = TopicName::Organization;
}

impl TopicSnapshot for TaskView {
    const TOPIC: TopicName = TopicName::Task;
}

impl TopicSnapshot for SessionDetail {
    const TOPIC: TopicName = TopicName::Session;
}

impl TopicSnapshot for ProcessesSnapshot {
    const TOPIC: TopicName = TopicName::SandboxProcesses;
}
