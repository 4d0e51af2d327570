//! Destroying an actor: no new calls, the calls in flight drained, `Entity::on_destroy` and a durable "destroying"
//! mark committed together, the outbox settled (every row delivered or dead-lettered), then the database deleted
//! and the key released; its subscribers' connections end (no `on_disconnect`). A key destroyed is gone: `*_existing` calls answer "not found", and `get_or_create` (or a
//! delivery addressed to it) creates a fresh actor with an empty database.
//!
//! Crash safety: the mark lives in the actor's own database and the actor is in the recovery index from that commit
//! on, so a process killed before the file is deleted reactivates the actor at recovery, and the activation resumes
//! the destruction instead of serving calls. The file is deleted before the recovery entry is cleared; an entry whose
//! file is gone names nothing and is dropped.

use std::time::Duration;

use actix::prelude::*;

use super::super::db;
use super::super::entity::Entity;
use super::super::error::{CallError, DestroyRefused};
use super::lifecycle::{DestroyReply, StopState};
use super::{Destroy, EntityActor};

/// How often a destroying actor looks whether its outbox has settled.
const SETTLE_POLL: Duration = Duration::from_millis(5);

impl<E: Entity> Handler<Destroy> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, d: Destroy, ctx: &mut Context<Self>) {
        let open = self.core.is_open();
        match &mut self.core.stop {
            StopState::Destroying(waiters) => waiters.extend(d.reply),
            StopState::Running if open => self.begin_destroy(ctx, d.reply, false),
            _ => {
                if let Some(reply) = d.reply {
                    let _ = reply.send(Err(self.unavailable()));
                }
            }
        }
    }
}

impl<E: Entity> EntityActor<E> {
    /// Stops admitting calls and starts destroying. `resumed`: the database already carries the mark (a destroy
    /// accepted before a restart), so `on_destroy` ran and committed then.
    pub(super) fn begin_destroy(&mut self, ctx: &mut Context<Self>, reply: Option<DestroyReply>, resumed: bool) {
        // Callers that find the slot retired wait for the key to be released instead of activating the file again.
        self.core.slot.mark_destroying();
        self.core.stop = StopState::Destroying(reply.into_iter().collect());
        if let Some(timer) = self.core.timer.take() {
            ctx.cancel_future(timer.handle);
        }
        tracing::debug!(kind = E::KIND, key = %self.core.encoded, resumed, "destroying");
        self.destroy_after_drain(ctx, resumed);
    }

    fn destroy_after_drain(&mut self, ctx: &mut Context<Self>, resumed: bool) {
        if self.core.slot.in_flight() > 0 {
            ctx.run_later(Duration::from_millis(1), move |act, ctx| act.destroy_after_drain(ctx, resumed));
            return;
        }
        self.flush(ctx);
        if !resumed {
            if let Err(message) = self.commit_destroying(ctx) {
                self.refuse_destroy(ctx, message);
                return;
            }
        }
        self.settle_then_delete(ctx);
    }

    /// `on_destroy` and the mark, in one transaction (`owe_work` puts the actor in the recovery index before commit).
    fn commit_destroying(&mut self, ctx: &mut Context<Self>) -> Result<(), String> {
        let res = self.with_ctx(ctx, |entity, c| {
            c.write(|tx| {
                entity.on_destroy(tx).map_err(|e| HookFailed(e.to_string()))?;
                db::mark_destroying(tx.conn())?;
                tx.owe_work();
                Ok::<(), HookFailed>(())
            })
        });
        res.map_err(|HookFailed(m)| m)
    }

    /// `on_destroy` refused (or the mark could not be written): nothing was committed. The actor stops as if
    /// passivated, so the next call activates it again, unchanged.
    fn refuse_destroy(&mut self, ctx: &mut Context<Self>, message: String) {
        tracing::info!(kind = E::KIND, key = %self.core.encoded, error = %message, "destroy refused");
        if let StopState::Destroying(waiters) = std::mem::replace(&mut self.core.stop, StopState::Running) {
            for w in waiters {
                let _ = w.send(Err(CallError::Handler(DestroyRefused(message.clone()))));
            }
        }
        self.finish_stop(ctx, "destroy refused");
    }

    /// Waits until every outbox row is delivered or dead-lettered, then deletes the database.
    fn settle_then_delete(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.core.stop, StopState::Destroying(_)) || !self.core.is_open() {
            return;
        }
        if self.shipping() {
            // Cluster mode: the destroying mark is durable before anything is delivered or deleted.
            self.after_durable(ctx, |act, ctx, shipped| {
                if shipped.is_ok() {
                    act.settle_then_delete(ctx);
                }
            });
            return;
        }
        if self.core.outbox.pending || self.core.outbox.in_flight {
            self.pump_outbox(ctx);
            ctx.run_later(SETTLE_POLL, |act, ctx| act.settle_then_delete(ctx));
            return;
        }
        self.delete_database(ctx);
    }

    fn delete_database(&mut self, ctx: &mut Context<Self>) {
        let StopState::Destroying(waiters) = std::mem::replace(&mut self.core.stop, StopState::Stopped) else {
            return;
        };
        for (_, b) in self.core.bg.drain() {
            ctx.cancel_future(b.handle);
        }
        let shared = self.core.registry.inner.shared.clone();
        let (kind, encoded) = (E::KIND, self.core.encoded.clone());
        if let Err(e) = shared.index.remove_due(kind, &encoded) {
            // Harmless if left: the due scanner drops an entry whose actor no longer exists.
            tracing::warn!(kind, key = %encoded, error = %e, "could not clear the due index entry");
        }
        shared.conns.remove_actor(kind, &encoded);
        shared.hub.close_actor(kind, &encoded);
        let (conn, permit, registry) =
            (self.core.conn.take(), self.core.live_permit.take(), self.core.registry.clone());
        let (key, slot, path) = (self.core.key.clone(), self.core.slot.clone(), self.core.path.clone());
        let durable = self.core.durable.take();
        let delete = move || {
            drop(conn);
            // Cluster mode: the log goes first (fenced); if it cannot, the actor keeps existing there, with its
            // destroying mark, and the next activation resumes the destroy.
            let forgotten = match durable {
                Some(d) => match tokio::runtime::Handle::try_current() {
                    Ok(handle) => handle.block_on(d.log.forget(&d.actor, d.txid)).map_err(|e| e.to_string()),
                    Err(_) => Err("no runtime to reach the commit log with".to_owned()),
                },
                None => Ok(()),
            };
            let removed = db::remove_actor_files(&path).map_err(|e| e.to_string()).and(forgotten);
            if removed.is_ok() {
                if let Err(e) = shared.index.unmark(kind, &encoded) {
                    tracing::warn!(kind, key = %encoded, error = %e, "could not clear recovery marker");
                }
            }
            // Released only now: a caller waiting for this key activates it after its file is gone, never the old
            // file under a new actor.
            registry.remove_slot(&key, &slot);
            slot.release_destroyed();
            let stats = &registry.inner.stats;
            stats.live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
            stats.destroyed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let failed = removed.err().map(|e| format!("deleting the database failed: {e}"));
            match &failed {
                None => tracing::info!(kind, key = %encoded, "actor destroyed"),
                Some(e) => tracing::error!(kind, key = %encoded, error = %e, "destroying the actor failed"),
            }
            for w in waiters {
                let answer = match &failed {
                    None => Ok(()),
                    Some(message) => Err(CallError::Storage { kind, key: encoded.clone(), message: message.clone() }),
                };
                let _ = w.send(answer);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(delete)),
            Err(_) => delete(),
        }
        ctx.stop();
    }
}

/// An `on_destroy` refusal or a failed write, as the message given to the caller of `destroy`.
struct HookFailed(String);

impl From<diesel::result::Error> for HookFailed {
    fn from(e: diesel::result::Error) -> Self {
        HookFailed(e.to_string())
    }
}
