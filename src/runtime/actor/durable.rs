//! The output gate of cluster mode: what an actor committed locally reaches its commit log before any reply, topic,
//! event or outbox delivery reveals it (`after_durable`). One append is in flight per actor at a time and the actor
//! handles nothing else meanwhile (`ctx.wait`), so entries follow commits in order and mutations arriving meanwhile
//! gather into the next batch. An append that fails poisons the actor: its callers hear that nothing was
//! acknowledged, and its file, which may hold commits the log lacks, is deleted when it stops.
//!
//! Without a commit log (single-node mode) `after_durable` runs its continuation at once.

use std::path::Path;

use actix::prelude::*;
use diesel::connection::SimpleConnection;

use super::super::durable::{self, Durable, LogError, Shipped};
use super::super::entity::Entity;
use super::EntityActor;

/// Work waiting for the append in flight.
pub(super) type AfterShip<E> = Box<dyn FnOnce(&mut EntityActor<E>, &mut Context<EntityActor<E>>, Result<(), LogError>)>;

impl<E: Entity> EntityActor<E> {
    /// Runs `then` once everything committed so far is durable, or with the reason it cannot be.
    pub(super) fn after_durable(
        &mut self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Result<(), LogError>) + 'static,
    ) {
        let Some(d) = self.core.durable.as_ref() else {
            return then(self, ctx, Ok(()));
        };
        if let Some(failed) = d.failure() {
            return then(self, ctx, Err(failed));
        }
        if d.in_flight {
            self.core.after_ship.push(Box::new(then));
            return;
        }
        match self.prepare_append() {
            Ok(None) => then(self, ctx, Ok(())),
            Ok(Some(append)) => {
                self.core.after_ship.push(Box::new(then));
                let shipped = append.shipped();
                let Some(d) = self.core.durable.as_mut() else { return };
                d.in_flight = true;
                let fut = d.log.append(append);
                ctx.wait(
                    actix::fut::wrap_future(fut).map(move |res, act: &mut Self, ctx| act.shipped(ctx, shipped, res)),
                );
            }
            Err(e) => {
                let failed = LogError::Unavailable(format!("reading the actor's commits: {e}"));
                self.poison(ctx, failed.clone());
                then(self, ctx, Err(failed));
            }
        }
    }

    /// Whether calls must wait before looking at the state: an append is in flight.
    pub(super) fn shipping(&self) -> bool {
        self.core.durable.as_ref().is_some_and(|d| d.in_flight)
    }

    /// The append for what was committed since the last one (a snapshot checkpoints the WAL into the file first).
    fn prepare_append(&mut self) -> std::io::Result<Option<durable::Append>> {
        let core = &mut self.core;
        let (Some(d), Some(conn)) = (core.durable.as_mut(), core.conn.as_mut()) else { return Ok(None) };
        d.next_append(&core.path, &mut || checkpoint(conn))
    }

    fn shipped(&mut self, ctx: &mut Context<Self>, shipped: Shipped, res: Result<(), LogError>) {
        let Some(d) = self.core.durable.as_mut() else { return };
        d.in_flight = false;
        match &res {
            Ok(()) => {
                d.appended(shipped);
                if d.wants_checkpoint() {
                    if let Some(conn) = self.core.conn.as_mut() {
                        match checkpoint(conn) {
                            Ok(()) => d.cursor.reset(),
                            Err(e) => {
                                tracing::warn!(kind = E::KIND, key = %self.core.encoded, error = %e, "checkpoint failed")
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(kind = E::KIND, key = %self.core.encoded, txid = shipped.txid, error = %e, "append refused");
                // Before anything waiting runs: the WAL cursor already moved past the refused frames, so nothing
                // (a stop's final ship included) may append after them.
                d.poisoned.get_or_insert(e.clone());
            }
        }
        for then in std::mem::take(&mut self.core.after_ship) {
            then(self, ctx, res.clone());
        }
        if let Err(e) = res {
            self.poison(ctx, e);
        }
    }

    /// The log did not take a commit: fail everything waiting, then stop; the file is deleted once closed.
    fn poison(&mut self, ctx: &mut Context<Self>, why: LogError) {
        if let Some(d) = self.core.durable.as_mut() {
            d.poisoned.get_or_insert(why);
        }
        self.finish_stop(ctx, "its commit log refused a commit");
    }
}

/// Folds the WAL into the database file and truncates it (the connection holds the file's only lock, so it
/// completes). Allowed on a `query_only` connection: it changes no content.
pub(super) fn checkpoint(conn: &mut diesel::SqliteConnection) -> std::io::Result<()> {
    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)").map_err(std::io::Error::other)
}

/// At close (on the blocking pool): ships what is left (outbox bookkeeping, a last command's writes), closes, and
/// marks the file as matching the log's head, or deletes it when it cannot be trusted.
pub(super) fn close_durable(conn: Option<diesel::SqliteConnection>, mut d: Durable, path: &Path) {
    let mut conn = conn;
    if d.poisoned.is_none() && !d.in_flight {
        if let Some(c) = conn.as_mut() {
            match d.next_append(path, &mut || checkpoint(c)) {
                Ok(None) => {}
                Ok(Some(append)) => {
                    let shipped = append.shipped();
                    let res = match tokio::runtime::Handle::try_current() {
                        Ok(handle) => handle.block_on(d.log.append(append)),
                        Err(_) => Err(LogError::Unavailable("no runtime to append with".into())),
                    };
                    match res {
                        Ok(()) => d.appended(shipped),
                        Err(e) => d.poisoned = Some(e),
                    }
                }
                Err(e) => d.poisoned = Some(LogError::Unavailable(e.to_string())),
            }
        }
    }
    drop(conn);
    let trusted = d.poisoned.is_none() && !d.in_flight && d.txid > 0;
    let res = if trusted { durable::write_marker(path, d.txid) } else { super::super::db::remove_actor_files(path) };
    if let Err(e) = res {
        tracing::warn!(kind = d.actor.kind, key = %d.actor.key, error = %e, "closing the actor's file");
    }
}
