//! How many agent turns run at once across the service. A turn holds a permit of the [`TurnPermits`] from its start to
//! its end. A session that finds none free does not start a turn: its prompt stays queued in its database, it waits
//! in the gate's first-in-first-out line, and — having no turn running — it may passivate and give its live slot to
//! others (a running turn pins its session, its task and the workspace's git processes, so without this bound a burst
//! of new tasks fills the live set with actors that cannot make room, and activations fail). A permit that frees up
//! is handed straight to the session that waited longest, activating it if it had passivated; its recovery mark
//! (`Tx::owe_work`) makes a restart pick up whoever was waiting.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Session;
use crate::actors::{DomainError, DomainResult, SessionKey};
use crate::runtime::{ActivationFailure, CallError, Command, EntityCtx, EntityKey, Registry};

/// The default number of turns that run at once (`foundry serve --max-turns`).
pub const DEFAULT_MAX_TURNS: usize = 64;

/// How long the dispatcher waits before handing a permit again to a session it could not reach (its activation
/// failed for a passing reason, such as the live set being full for a moment).
const REDELIVER_AFTER: Duration = Duration::from_millis(200);

/// The turn permits, as a runtime service (`Runtime::provide(Arc::new(TurnPermits::new(n)))`; the domain provides
/// one of [`DEFAULT_MAX_TURNS`] if none was). Without one, turns are not bounded.
pub struct TurnPermits {
    inner: Arc<Gate>,
}

struct Gate {
    limit: usize,
    state: Mutex<GateState>,
    handoff: mpsc::UnboundedSender<(SessionKey, TurnPermit)>,
    /// Taken by the first domain built on the runtime, which runs the dispatcher.
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(SessionKey, TurnPermit)>>>,
}

#[derive(Default)]
struct GateState {
    /// Permits nobody holds.
    free: usize,
    /// Sessions waiting for a permit, longest first (`queued` holds the same keys, for deduplication).
    line: VecDeque<SessionKey>,
    queued: HashSet<SessionKey>,
    /// Sessions a permit was handed to that have not claimed it yet: they do not line up again meanwhile.
    handed: HashSet<SessionKey>,
}

fn lock(m: &Mutex<GateState>) -> std::sync::MutexGuard<'_, GateState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The right to run one turn. Dropping it hands it to the next waiting session (or frees it).
pub struct TurnPermit {
    gate: Arc<Gate>,
    /// The session it was handed to, until that session claims it.
    handed_to: Option<SessionKey>,
    /// Cleared when the gate is closing: the permit then just disappears.
    live: bool,
}

impl std::fmt::Debug for TurnPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnPermit").field("handed_to", &self.handed_to).finish()
    }
}

impl TurnPermit {
    /// The session it was handed to now holds it for its turn.
    fn claim(&mut self) {
        if let Some(key) = self.handed_to.take() {
            lock(&self.gate.state).handed.remove(&key);
        }
    }
}

impl Drop for TurnPermit {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let gate = self.gate.clone();
        let mut state = lock(&gate.state);
        if let Some(key) = self.handed_to.take() {
            state.handed.remove(&key);
        }
        // Hand the permit on to the longest-waiting session the dispatcher can still reach; free it otherwise.
        while let Some(next) = state.line.pop_front() {
            state.queued.remove(&next);
            state.handed.insert(next.clone());
            let permit = TurnPermit { gate: gate.clone(), handed_to: Some(next.clone()), live: true };
            match gate.handoff.send((next, permit)) {
                Ok(()) => return,
                Err(mpsc::error::SendError((key, mut permit))) => {
                    // No dispatcher (the runtime is going away): nobody can be woken.
                    state.handed.remove(&key);
                    permit.live = false;
                }
            }
        }
        state.free += 1;
    }
}

/// What [`TurnPermits::admit`] decided.
pub enum Admission {
    Run(TurnPermit),
    /// In line (or a permit is already on its way to this session).
    Wait,
}

impl TurnPermits {
    /// A gate letting `limit` turns run at once (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        let (handoff, receiver) = mpsc::unbounded_channel();
        let state = GateState { free: limit, ..GateState::default() };
        TurnPermits {
            inner: Arc::new(Gate { limit, state: Mutex::new(state), handoff, receiver: Mutex::new(Some(receiver)) }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Turns running now (permits held or on their way to a waiting session).
    pub fn running(&self) -> usize {
        self.inner.limit - lock(&self.inner.state).free
    }

    /// Sessions waiting for a permit.
    pub fn waiting(&self) -> usize {
        lock(&self.inner.state).line.len()
    }

    /// A permit for `session` if one is free and nobody waits before it; otherwise `session` lines up (once).
    pub fn admit(&self, session: &SessionKey) -> Admission {
        let mut state = lock(&self.inner.state);
        if state.handed.contains(session) || state.queued.contains(session) {
            return Admission::Wait;
        }
        if state.free > 0 && state.line.is_empty() {
            state.free -= 1;
            return Admission::Run(TurnPermit { gate: self.inner.clone(), handed_to: None, live: true });
        }
        state.queued.insert(session.clone());
        state.line.push_back(session.clone());
        Admission::Wait
    }

    /// Lines `session` up again at the front, after a permit could not reach it (or hands it a free one at once).
    fn reline(&self, session: &SessionKey) {
        let mut state = lock(&self.inner.state);
        if state.handed.contains(session) || state.queued.contains(session) {
            return;
        }
        if state.free > 0 {
            state.free -= 1;
            state.handed.insert(session.clone());
            let permit = TurnPermit { gate: self.inner.clone(), handed_to: Some(session.clone()), live: true };
            drop(state);
            // On failure (no dispatcher) the returned permit is dropped here, which frees it again.
            let _ = self.inner.handoff.send((session.clone(), permit));
            return;
        }
        state.queued.insert(session.clone());
        state.line.push_front(session.clone());
    }

    /// Hands freed permits to the sessions of `sessions` until the runtime stops. Started once per gate.
    pub(crate) fn start_dispatcher(&self, sessions: Registry<Session>) {
        let Some(mut rx) = self.inner.receiver.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let gate = self.inner.clone();
        actix_rt::spawn(async move {
            while let Some((key, permit)) = rx.recv().await {
                actix_rt::spawn(deliver(TurnPermits { inner: gate.clone() }, sessions.clone(), key, permit));
            }
        });
    }
}

/// Gives `permit` to `key`'s session, activating it if needed. A session that no longer exists, or a runtime
/// shutting down, just drops the permit (which hands it on or frees it). If the session could not be reached for a
/// passing reason (its activation waited too long for a live slot), the permit went on to the next in line and the
/// session lines up again at the front a moment later.
async fn deliver(gate: TurnPermits, sessions: Registry<Session>, key: SessionKey, permit: TurnPermit) {
    match sessions.exec_existing(&key, StartQueuedTurn { permit }).await {
        Ok(_) | Err(CallError::NotFound { .. } | CallError::Handler(_) | CallError::ShuttingDown) => {}
        Err(CallError::Activation(e)) if matches!(e.reason, ActivationFailure::ShuttingDown) => {}
        Err(e) => {
            tracing::warn!(session = %key.encode(), error = %e, "could not hand a turn permit to a waiting session");
            tokio::time::sleep(REDELIVER_AFTER).await;
            gate.reline(&key);
        }
    }
}

/// A turn permit for this session, which waited for one: runs its next queued prompt (if it still has one that may
/// run; otherwise the permit goes on to the next session).
pub struct StartQueuedTurn {
    permit: TurnPermit,
}

impl Command for StartQueuedTurn {
    type Entity = Session;
    /// Whether a turn started.
    type Output = bool;
    type Error = DomainError;
    fn run(mut self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<bool> {
        self.permit.claim();
        s.run_queue_with(ctx, Some(self.permit))
    }
}
