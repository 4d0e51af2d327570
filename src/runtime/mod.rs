//! The actor runtime: keyed actor kinds on actix, each instance with its own SQLite database, reached through a
//! lazily activating Registry. Knows nothing of the domain.
//!
//! - [`entity`]: what a kind implements ([`Entity`]) and its message traits ([`Read`], [`Mutation`], [`Command`]).
//! - [`registry`]: get-or-create per key, bounded in-flight calls, typed call paths.
//! - [`actor`]: the host actor: supervision, group commit, topics, outbox delivery, passivation, shutdown.
//! - [`db`], [`key`]: per-actor files, pragmas, migrations, key escaping.
//! - [`topic`], [`patch`], [`outbox`]: snapshots and patches to subscribers, durable cross-actor delivery.
//! - [`connection`]: subscribers as connections the actor knows (hooks, per-connection state) and the events it
//!   emits to them.
//! - [`idempotency`]: idempotency keys recorded in the transaction of the creation they stand for.
//! - [`schedule`]: durable schedules (alarms) an actor sets for itself; `due`: the runtime-wide index that wakes
//!   passivated actors when one is due.
//! - [`placement`]: the fixed 1,024 shards actors are placed in, and the `Router` cluster mode decides them with;
//!   `shards`: stopping a shard's live actors and resuming its outboxes (`Runtime::stop_shards`, `recover_shards`).
//! - [`remote`]: calls and outbox deliveries to actors of shards another node serves (cluster mode's transport seam).
//! - [`durable`], [`wal`]: cluster mode's commit log seam: every commit shipped as page images before anyone hears
//!   of it, and actors rebuilt from the log on another node.
//! - [`system`]: the [`Runtime`] tying it together.
//! - [`inspect`]: the read-only view of a running runtime for operators ([`Inspector`]) and each actor's trace of
//!   recent messages.

pub mod actor;
mod batch;
pub mod connection;
pub mod db;
mod due;
pub mod durable;
pub mod entity;
pub mod error;
pub mod idempotency;
pub mod inspect;
pub mod key;
mod links;
pub mod outbox;
pub mod patch;
pub mod placement;
pub mod procedure;
mod publish;
pub mod registry;
pub mod remote;
pub mod schedule;
mod shards;
pub mod system;
pub mod topic;
pub mod wal;

pub use actor::{restart_backoff, EntityActor};
pub use connection::{Connect, ConnectError, Connection, ConnectionId, ConnectionInfo, ConnectionItem, Event, Refusal};
pub use db::Synchronous;
pub use entity::{
    message_name, Command, Delivery, Entity, EntityCtx, HookResult, KindConfig, Mutation, Myself, Read, SleepReason,
    SnapshotError, Tx,
};
pub use error::{ActivationError, ActivationFailure, CallError, DestroyRefused, KeyError, RuntimeError};
pub use idempotency::{IdempotencyKey, Idempotent, Once, Recorded};
pub use inspect::{InspectError, Inspector};
pub use key::EntityKey;
pub use outbox::Accepts;
pub use patch::{PatchError, PatchOp};
pub use placement::{shard_of, Route, Router, ShardId, SHARD_COUNT};
pub use procedure::Procedure;
pub use registry::{Backpressure, EntityRef, KindStats, Registry};
pub use remote::{Remote, Transport, TransportError};
pub use schedule::{CancelSchedule, ListSchedules, ScheduleId, ScheduleInfo, Scheduled};
pub use system::{RecoveryReport, Runtime, RuntimeConfig};
pub use topic::{NeedFull, Subscription, TopicEvent, TopicFrame, TopicPatch};

/// Re-exported so kinds can write `const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/<kind>")`.
pub use diesel_migrations::{embed_migrations, EmbeddedMigrations};
