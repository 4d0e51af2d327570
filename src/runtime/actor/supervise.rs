//! Supervision: a panic in a handler is caught, the actor closes and reopens its database, reloads the entity and
//! backs off on repeated failure, so a poison message cannot make an actor spin or take its arbiter down.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use diesel::sqlite::SqliteConnection;
use futures_util::FutureExt;

use super::super::db;
use super::super::entity::{Effects, Entity, Tx};
use super::super::error::ActivationFailure;
use super::super::outbox;
use super::super::system::Shared;
use super::EntityActor;

/// Back-off before the actor processes messages again after its `failures`-th consecutive failure: none for an
/// isolated panic, then 10 ms doubling up to 5 s, so a poison message cannot make an actor spin.
pub fn restart_backoff(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let ms = 10u64.saturating_mul(1u64 << (failures - 2).min(20));
    Duration::from_millis(ms.min(5_000))
}

pub(crate) struct Opened<E> {
    pub conn: SqliteConnection,
    pub incarnation: String,
    pub entity: E,
    pub versions: HashMap<String, u64>,
    pub outbox_pending: bool,
    /// A destroy was accepted before the actor last stopped: it resumes the destruction instead of serving calls.
    pub destroying: bool,
}

/// Opens, migrates and loads an entity (running `Entity::on_create` if this open creates it); runs on the blocking
/// pool at activation and inline on restart.
pub(crate) fn open_entity<E: Entity>(
    key: &E::Key,
    path: &Path,
    encoded: &str,
    shared: &Shared,
    fresh: bool,
) -> Result<Opened<E>, ActivationFailure> {
    let opts = shared.config.conn_options();
    // Effects of the creation (topics, schedules, outbox rows) need no publishing: nobody subscribes to an actor that
    // does not exist yet, and the new actor arms its schedules and pumps its outbox when it starts.
    let mut on_create = |conn: &mut SqliteConnection| {
        let mut effects = Effects::default();
        let mut tx = Tx { conn, effects: &mut effects, runtime: shared, kind: E::KIND };
        E::on_create(key, &mut tx).map_err(|e| e.to_string())
    };
    let mut conn = db::open_actor_db_with(path, E::KIND, encoded, E::MIGRATIONS, opts, fresh, &mut on_create)?;
    let load = |e: diesel::result::Error| ActivationFailure::Load(e.to_string());
    let versions = outbox::load_versions(&mut conn).map_err(load)?;
    let outbox_pending = outbox::has_rows(&mut conn).map_err(load)?;
    let identity = db::identity(&mut conn).map_err(load)?;
    let entity = E::load(key, &mut conn).map_err(load)?;
    Ok(Opened {
        conn,
        incarnation: identity.incarnation,
        entity,
        versions,
        outbox_pending,
        destroying: identity.destroying,
    })
}

/// Logs instead of unwinding: a panic in background work must not take the arbiter thread (and every actor on it)
/// down.
pub(crate) fn guard_panics<F: Future<Output = ()>>(fut: F) -> impl Future<Output = ()> {
    AssertUnwindSafe(fut).catch_unwind().map(|res| {
        if let Err(p) = res {
            tracing::error!(panic = %panic_text(&p), "background work panicked");
        }
    })
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<E: Entity> EntityActor<E> {
    pub(super) fn call_on_wake(&mut self, ctx: &mut Context<Self>) {
        let res = catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| e.on_wake(c))));
        if let Err(p) = res {
            tracing::error!(kind = E::KIND, key = %self.core.encoded, panic = %panic_text(&p), "on_wake hook panicked");
        }
    }

    /// Reloads the entity from its database after a panic: background work is cancelled, the connection (and any
    /// transaction it had open) is closed and reopened, and repeated failures back off.
    pub(super) fn restart(&mut self, ctx: &mut Context<Self>, why: &str) {
        self.core.failures += 1;
        self.core.stats().restarts.fetch_add(1, Ordering::Relaxed);
        if self.core.durable.is_some() {
            // Cluster mode: reopening in place would checkpoint commits not yet shipped into the file, out of the
            // log's reach. Stopping ships them at close; the next call activates the actor afresh.
            tracing::error!(kind = E::KIND, key = %self.core.encoded, error = why, "stopping after a panic");
            self.finish_stop(ctx, "stopped after a panic");
            return;
        }
        for (_, b) in self.core.bg.drain() {
            ctx.cancel_future(b.handle);
        }
        self.core.conn = None;
        let shared = self.core.registry.inner.shared.clone();
        let reopened = catch_unwind(AssertUnwindSafe(|| {
            open_entity::<E>(&self.core.key, &self.core.path, &self.core.encoded, &shared, false)
        }))
        .unwrap_or_else(|p| Err(ActivationFailure::Load(format!("load panicked: {}", panic_text(&p)))));
        match reopened {
            Ok(opened) => {
                self.entity = opened.entity;
                self.core.conn = Some(opened.conn);
                self.core.incarnation = opened.incarnation;
                self.core.versions = opened.versions;
                self.core.outbox.pending |= opened.outbox_pending;
            }
            Err(e) => {
                tracing::error!(kind = E::KIND, key = %self.core.encoded, error = %e, "restart failed; stopping");
                self.finish_stop(ctx, "restart failed");
                return;
            }
        }
        let backoff = restart_backoff(self.core.failures);
        self.core.stats().last_backoff_ms.store(backoff.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(
            kind = E::KIND,
            key = %self.core.encoded,
            failures = self.core.failures,
            backoff_ms = backoff.as_millis() as u64,
            panic = why,
            "actor restarted from its database"
        );
        if !backoff.is_zero() {
            ctx.wait(actix::fut::wrap_future(actix_rt::time::sleep(backoff)));
        }
        self.call_on_wake(ctx);
        if self.core.outbox.pending {
            self.pump_outbox(ctx);
        }
        self.arm_from_db(ctx, super::schedules::Arming::Again);
    }
}

#[cfg(test)]
mod tests {
    use super::restart_backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(restart_backoff(1), Duration::ZERO);
        assert_eq!(restart_backoff(2), Duration::from_millis(10));
        assert_eq!(restart_backoff(3), Duration::from_millis(20));
        assert!(restart_backoff(6) > restart_backoff(5));
        assert_eq!(restart_backoff(40), Duration::from_secs(5));
    }
}
