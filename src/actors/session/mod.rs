//! The session actor (key: task key + session id), data side: its model settings, status and transcript. It pushes
//! its summary to its task only. Publishes the `session` topic (its changes as patches: `changes.rs`). Its agent loop
//! (turns as background work, steer, interrupt, follow-ups) is in `agent.rs`.

mod agent;
mod changes;
mod messages;
pub mod schema;
mod turns;

use diesel::sqlite::SqliteConnection;
use serde::Serialize;

pub use agent::{
    Interrupt, RunQueue, SessionAgent, SessionWorkspace, Steer, SubmitPrompt, SubmitPromptOnce, Submitted, TurnPlace,
    TurnWorkspace,
};
pub use messages::*;
pub use schema::TranscriptItem;
pub use turns::{StartQueuedTurn, TurnPermits, DEFAULT_MAX_TURNS};

use crate::actors::summary::SessionStatus;
use crate::actors::{DomainResult, SessionKey};
use crate::runtime::{embed_migrations, Accepts, EmbeddedMigrations, Entity, EntityCtx, EntityKey, SnapshotError};

pub const TOPIC: &str = "session";

pub struct Session {
    pub key: SessionKey,
    /// The running turn: a runtime handle, not state (the turn's effects are all in the database).
    turn: Option<agent::RunningTurn>,
    next_turn: u64,
    /// In the [`TurnPermits`]'s line: a queued prompt waits for a permit (the session may passivate meanwhile).
    waiting: bool,
}

impl Session {
    pub fn new(key: SessionKey) -> Self {
        Session { key, turn: None, next_turn: 0, waiting: false }
    }
}

/// What `sessionUpdated` carries.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionDetail {
    pub org_id: String,
    pub repo_id: String,
    pub task_id: String,
    pub session_id: String,
    pub name: String,
    pub model: String,
    pub mode: String,
    pub thought_level: String,
    pub status: SessionStatus,
    pub transcript: Vec<TranscriptItem>,
    /// Text streamed by the running turn so far.
    pub partial_text: String,
    /// Prompts waiting for a turn.
    pub queued: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SessionDetail {
    pub(crate) fn new(key: &SessionKey, m: schema::MetaRow, transcript: Vec<TranscriptItem>, queued: i64) -> Self {
        SessionDetail {
            org_id: key.org.clone(),
            repo_id: key.repo.clone(),
            task_id: key.task.clone(),
            session_id: key.session.clone(),
            status: m.status(),
            transcript,
            queued,
            partial_text: m.partial_text,
            name: m.name,
            model: m.model,
            mode: m.mode,
            thought_level: m.thought_level,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

impl Session {
    /// Three queries, whatever the transcript's length.
    fn build_detail(&self, db: &mut SqliteConnection) -> DomainResult<SessionDetail> {
        let m = schema::require_meta(db, &self.key.session)?;
        Ok(SessionDetail::new(&self.key, m, schema::transcript_items(db)?, schema::queued(db)?))
    }
}

impl Entity for Session {
    type Key = SessionKey;
    const KIND: &'static str = "session";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/session");

    /// With its organization: a whole organization's actors share one shard (`runtime::placement`).
    fn placement_key(key: &Self::Key) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&key.org)
    }

    fn load(key: &SessionKey, _: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(Session::new(key.clone()))
    }

    fn on_wake(&mut self, ctx: &mut EntityCtx<'_, Self>) {
        if let Err(e) = self.recover_turn(ctx) {
            tracing::error!(session = %self.key.encode(), error = %e, "could not recover the agent loop");
        }
    }

    fn can_passivate(&self) -> bool {
        self.turn.is_none()
    }

    fn owes_work(&self) -> bool {
        self.waiting
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        crate::actors::topic_snapshot(Self::KIND, topic, TOPIC, || self.build_detail(db))
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<InitializeSession>().accept::<CloseSessionNow>();
        deliveries.schedule::<agent::StartOwedTurn>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
        agent::accept_remote(deliveries);
    }
}
