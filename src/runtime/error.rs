//! The runtime's typed errors: what a caller of an actor can get back besides the handler's own error.

use std::time::Duration;

/// A key that cannot name an actor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is empty")]
    Empty,
    #[error("key {0:?} is malformed")]
    Malformed(String),
}

/// Why an actor could not be activated (its database opened, migrated and loaded).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot activate {kind} {key:?}: {reason}")]
pub struct ActivationError {
    pub kind: &'static str,
    pub key: String,
    pub reason: ActivationFailure,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ActivationFailure {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot open database {path}: {message}")]
    Open { path: String, message: String },
    #[error("migration {migration} failed: {message}")]
    Migration { migration: String, message: String },
    #[error("database belongs to {stored_kind} {stored_key:?}")]
    IdentityMismatch { stored_kind: String, stored_key: String },
    #[error("loading state failed: {0}")]
    Load(String),
    /// The kind's `Entity::on_create` refused; nothing was created.
    #[error("creating the actor failed: {0}")]
    Create(String),
    #[error("no live slot became free within {0:?} (max live actors reached)")]
    TooManyLive(Duration),
    #[error("the runtime is shutting down")]
    ShuttingDown,
    #[error("kind {0} is not registered with this runtime")]
    UnknownKind(String),
    /// Cluster mode: another node serves the actor's shard (or none does right now); nothing was opened.
    #[error("shard {0} is not served by this node")]
    NotOwner(super::placement::ShardId),
    /// Cluster mode: the commit log (the store of record) did not answer, so the actor could not be checked
    /// against it or rebuilt from it; nothing was opened. Retrying later may succeed (unlike a damaged log).
    #[error("the commit log could not be reached: {0}")]
    StoreUnavailable(String),
}

/// `Entity::on_destroy` refused the destroy (its message); nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destroy refused: {0}")]
pub struct DestroyRefused(pub String);

/// What a call to an actor can return instead of the handler's reply.
///
/// `E` is the handler's own error type, so domain errors stay typed end to end.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The handler ran and refused: for a mutation, everything it wrote was rolled back.
    #[error(transparent)]
    Handler(E),
    /// The actor's mailbox is full and the caller asked not to wait.
    #[error("{kind} {key:?} is overloaded ({capacity} calls in flight)")]
    Overloaded { kind: &'static str, key: String, capacity: usize },
    /// The caller waited longer than its deadline for a mailbox slot; the message was never sent.
    #[error("timed out after {0:?} waiting for a mailbox slot")]
    Timeout(Duration),
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// The handler panicked; its transaction was rolled back and the actor was restarted from its database.
    #[error("{kind} {key:?} panicked handling {message}: {panic}")]
    Panicked { kind: &'static str, key: String, message: &'static str, panic: String },
    /// Committing failed (disk full, I/O error): nothing of this call was kept.
    #[error("storage error in {kind} {key:?}: {message}")]
    Storage { kind: &'static str, key: String, message: String },
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The key names nothing: an `*_existing` call found neither a live actor nor a database, and created neither.
    #[error("{kind} {key:?} does not exist")]
    NotFound { kind: &'static str, key: String },
    /// The actor kept stopping under the call (should not happen; bounded retries give up).
    #[error("{kind} {key:?} is unavailable")]
    Unavailable { kind: &'static str, key: String },
}

impl<E> CallError<E> {
    /// The handler's own error, if that is what this is.
    pub fn handler(self) -> Option<E> {
        match self {
            CallError::Handler(e) => Some(e),
            _ => None,
        }
    }

    /// Same error with the handler error mapped (for layers that wrap domain errors).
    pub fn map_handler<F>(self, f: impl FnOnce(E) -> F) -> CallError<F> {
        match self {
            CallError::Handler(e) => CallError::Handler(f(e)),
            CallError::Overloaded { kind, key, capacity } => CallError::Overloaded { kind, key, capacity },
            CallError::Timeout(d) => CallError::Timeout(d),
            CallError::Activation(a) => CallError::Activation(a),
            CallError::Panicked { kind, key, message, panic } => CallError::Panicked { kind, key, message, panic },
            CallError::Storage { kind, key, message } => CallError::Storage { kind, key, message },
            CallError::ShuttingDown => CallError::ShuttingDown,
            CallError::Unavailable { kind, key } => CallError::Unavailable { kind, key },
            CallError::NotFound { kind, key } => CallError::NotFound { kind, key },
        }
    }
}

/// Errors of the runtime as a whole (start-up, shutdown).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("runtime index database: {0}")]
    Index(String),
}
