//! The items of a group-commit batch: each mutation (or outbox delivery) waiting for the batch's transaction, run
//! under `catch_unwind` in its own savepoint, and answered once the batch's fate is known.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::actor::{panic_text, Reply};
use super::entity::{message_name, Entity, Mutation, Tx};
use super::error::CallError;
use super::inspect::{TraceKind, TraceOutcome};
use super::outbox::{self, Source};

/// One mutation waiting in a group-commit batch.
pub(super) trait PendingItem<E: Entity> {
    fn name(&self) -> &'static str;
    /// Runs in the open transaction; `Err` means this item's writes must be rolled back.
    fn apply(&mut self, entity: &E, tx: &mut Tx<'_>) -> Result<(), ItemFailed>;
    /// Sends the reply once the batch's fate is known; how it ended, for the trace.
    fn finish(self: Box<Self>, outcome: &BatchOutcome, kind: &'static str, key: &str) -> TraceOutcome;
    /// Its name and sort for the trace, and when the actor took it up (if tracing).
    fn traced(&self) -> (&'static str, TraceKind, Option<Instant>);
}

pub(super) enum ItemFailed {
    Handler,
    Panicked(String),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for ItemFailed {
    fn from(e: diesel::result::Error) -> Self {
        ItemFailed::Db(e)
    }
}

pub(super) enum BatchOutcome {
    Committed,
    StorageFailed(String),
    /// Committed locally but the commit log did not take it (cluster mode): not acknowledged, the file is discarded.
    NotDurable(super::durable::LogError),
}

pub(super) enum ItemResult<T, E> {
    NotRun,
    Done(Result<T, E>),
    Panicked(String),
}

fn finish_reply<T, Err>(
    result: ItemResult<T, Err>,
    reply: Reply<T, Err>,
    outcome: &BatchOutcome,
    kind: &'static str,
    key: &str,
    message: &'static str,
) -> TraceOutcome {
    let traced = match (&result, outcome) {
        (ItemResult::Done(Err(_)), _) => TraceOutcome::Refused,
        (ItemResult::Panicked(_), _) => TraceOutcome::Panicked,
        (ItemResult::Done(Ok(_)), BatchOutcome::Committed) => TraceOutcome::Ok,
        _ => TraceOutcome::Failed,
    };
    let answer = match (result, outcome) {
        (ItemResult::Done(Err(e)), _) => Err(CallError::Handler(e)),
        (ItemResult::Panicked(panic), _) => Err(CallError::Panicked { kind, key: key.to_owned(), message, panic }),
        (ItemResult::Done(Ok(v)), BatchOutcome::Committed) => Ok(v),
        (_, BatchOutcome::StorageFailed(m)) => {
            Err(CallError::Storage { kind, key: key.to_owned(), message: m.clone() })
        }
        (_, BatchOutcome::NotDurable(e)) => Err(not_durable(e, kind, key)),
        (ItemResult::NotRun, BatchOutcome::Committed) => {
            Err(CallError::Storage { kind, key: key.to_owned(), message: "mutation was not applied".into() })
        }
    };
    let _ = reply.send(answer);
    traced
}

/// The caller's error for a commit the log did not take: a fence refusal is "not the owner" (retry where the shard
/// is served; nothing was applied), anything else a storage error (it may have landed: retry with the same
/// idempotency key).
pub(super) fn not_durable<Err>(e: &super::durable::LogError, kind: &'static str, key: &str) -> CallError<Err> {
    match e {
        super::durable::LogError::Fenced(shard) => CallError::Activation(super::error::ActivationError {
            kind,
            key: key.to_owned(),
            reason: super::error::ActivationFailure::NotOwner(*shard),
        }),
        other => CallError::Storage { kind, key: key.to_owned(), message: other.to_string() },
    }
}

/// Runs one mutation under `catch_unwind`, storing its result for the reply and telling the batch whether to keep
/// its writes.
fn run_item<T, E>(slot: &mut ItemResult<T, E>, f: impl FnOnce() -> Result<T, E>) -> Result<(), ItemFailed> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => {
            *slot = ItemResult::Done(Ok(v));
            Ok(())
        }
        Ok(Err(e)) => {
            *slot = ItemResult::Done(Err(e));
            Err(ItemFailed::Handler)
        }
        Err(p) => {
            let text = panic_text(&p);
            *slot = ItemResult::Panicked(text.clone());
            Err(ItemFailed::Panicked(text))
        }
    }
}

pub(super) struct MutationItem<M: Mutation> {
    pub msg: Option<M>,
    pub result: ItemResult<M::Output, M::Error>,
    pub reply: Reply<M::Output, M::Error>,
    /// When the actor took it up (only while tracing).
    pub since: Option<Instant>,
}

impl<M: Mutation> PendingItem<M::Entity> for MutationItem<M> {
    fn name(&self) -> &'static str {
        message_name::<M>()
    }
    fn apply(&mut self, entity: &M::Entity, tx: &mut Tx<'_>) -> Result<(), ItemFailed> {
        let Some(msg) = self.msg.take() else { return Ok(()) };
        run_item(&mut self.result, || msg.apply(entity, tx))
    }
    fn finish(self: Box<Self>, outcome: &BatchOutcome, kind: &'static str, key: &str) -> TraceOutcome {
        finish_reply(self.result, self.reply, outcome, kind, key, message_name::<M>())
    }
    fn traced(&self) -> (&'static str, TraceKind, Option<Instant>) {
        (message_name::<M>(), TraceKind::Mutation, self.since)
    }
}

pub(super) struct DeliverItem<M: Mutation> {
    pub source: Source,
    pub seq: i64,
    pub msg: Option<M>,
    pub result: ItemResult<bool, M::Error>,
    pub reply: Reply<bool, M::Error>,
    pub since: Option<Instant>,
}

impl<M: Mutation> PendingItem<M::Entity> for DeliverItem<M> {
    fn name(&self) -> &'static str {
        message_name::<M>()
    }
    fn apply(&mut self, entity: &M::Entity, tx: &mut Tx<'_>) -> Result<(), ItemFailed> {
        let Some(msg) = self.msg.take() else { return Ok(()) };
        if outbox::already_applied(tx.conn, &self.source, self.seq)? {
            self.result = ItemResult::Done(Ok(false));
            return Ok(());
        }
        run_item(&mut self.result, || msg.apply(entity, tx).map(|_| true))?;
        // Recorded in the same savepoint: the message and its sequence commit or roll back together. A failure here
        // is a storage error (retried by the sender), not the receiver refusing the message.
        outbox::record_applied(tx.conn, &self.source, self.seq)?;
        Ok(())
    }
    fn finish(self: Box<Self>, outcome: &BatchOutcome, kind: &'static str, key: &str) -> TraceOutcome {
        finish_reply(self.result, self.reply, outcome, kind, key, message_name::<M>())
    }
    fn traced(&self) -> (&'static str, TraceKind, Option<Instant>) {
        (message_name::<M>(), TraceKind::Delivery, self.since)
    }
}
