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
            if let Some(d) = self.core.durable.as_mut() {
                d.queued = true;
            }
            return;
        }
        match self.prepare_append() {
            Ok(None) => then(self, ctx, Ok(())),
            Ok(Some(ship)) => {
                self.core.after_ship.push(Box::new(then));
                self.start_ship(ctx, ship);
            }
            Err(e) => {
                let failed = LogError::Unavailable(format!("reading the actor's commits: {e}"));
                self.poison(ctx, failed.clone());
                then(self, ctx, Err(failed));
            }
        }
    }

    /// Sends `ship`; the actor handles nothing else until it has landed (or failed).
    fn start_ship(&mut self, ctx: &mut Context<Self>, ship: durable::Ship) {
        let shipped = ship.shipped();
        let Some(d) = self.core.durable.as_mut() else { return };
        d.in_flight = true;
        let fut = ship.send(d.log.as_ref());
        ctx.wait(actix::fut::wrap_future(fut).map(move |res, act: &mut Self, ctx| act.shipped(ctx, shipped, res)));
    }

    /// Whether calls must wait before looking at the state: an append is in flight.
    pub(super) fn shipping(&self) -> bool {
        self.core.durable.as_ref().is_some_and(|d| d.in_flight)
    }

    /// The append for what was committed since the last one (a snapshot checkpoints the WAL into the file first),
    /// or the wake state alone if only it changed.
    fn prepare_append(&mut self) -> std::io::Result<Option<durable::Ship>> {
        let core = &mut self.core;
        let (Some(d), Some(conn)) = (core.durable.as_mut(), core.conn.as_mut()) else { return Ok(None) };
        d.next_ship(&core.path, &mut || checkpoint(conn))
    }

    /// Cluster mode: the wake state changed without a commit (the recovery marker was cleared, the earliest schedule
    /// was read): ships it now unless it is what the log holds. A no-op in single-node mode.
    pub(super) fn wake_changed(&mut self, ctx: &mut Context<Self>, change: impl FnOnce(&mut durable::WakeState)) {
        let Some(d) = self.core.durable.as_mut() else { return };
        change(&mut d.wake);
        if d.wake.change().is_some() && d.failure().is_none() && self.core.is_open() {
            self.after_durable(ctx, |_, _, _| {});
        }
    }

    fn shipped(&mut self, ctx: &mut Context<Self>, shipped: Shipped, res: Result<(), LogError>) {
        let Some(d) = self.core.durable.as_mut() else { return };
        d.in_flight = false;
        let mut res = match res {
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
                Ok(())
            }
            Err(e) if !shipped.entry => {
                // Only the wake state: the file still matches the log's head, so nothing is lost and nobody waiting
                // was promised anything more. The change stays unshipped and goes with the next write.
                tracing::warn!(kind = E::KIND, key = %self.core.encoded, error = %e, "wake state not written");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(kind = E::KIND, key = %self.core.encoded, txid = shipped.txid, error = %e, "append refused");
                // Before anything waiting runs: the WAL cursor already moved past the refused frames, so nothing
                // (a stop's final ship included) may append after them.
                d.poisoned.get_or_insert(e.clone());
                Err(e)
            }
        };
        if res.is_ok() && std::mem::replace(&mut d.queued, false) {
            // Work queued while this write was in flight may wait for commits made meanwhile (in the same handler):
            // they ship first, and everything waiting runs once they have landed.
            match self.prepare_append() {
                Ok(Some(ship)) => return self.start_ship(ctx, ship),
                Ok(None) => {}
                Err(e) => {
                    let failed = LogError::Unavailable(format!("reading the actor's commits: {e}"));
                    if let Some(d) = self.core.durable.as_mut() {
                        d.poisoned.get_or_insert(failed.clone());
                    }
                    res = Err(failed);
                }
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
            match d.next_ship(path, &mut || checkpoint(c)) {
                Ok(None) => {}
                Ok(Some(ship)) => {
                    let shipped = ship.shipped();
                    let res = match tokio::runtime::Handle::try_current() {
                        Ok(handle) => handle.block_on(ship.send(d.log.as_ref())),
                        Err(_) => Err(LogError::Unavailable("no runtime to append with".into())),
                    };
                    match res {
                        Ok(()) => d.appended(shipped),
                        // Only the wake state failed: the file still matches the head (a later owner may wake the
                        // actor once for nothing).
                        Err(e) if !shipped.entry => {
                            tracing::warn!(kind = d.actor.kind, key = %d.actor.key, error = %e, "wake state not written")
                        }
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
