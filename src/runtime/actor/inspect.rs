//! The inspector's message to a live actor ([`Inspect`]): its state (topic versions, outbox, schedules, background
//! work), its trace of recent messages, or a serialised copy of its database. The actor answers from its own
//! connection and memory; none of it counts as activity, so looking at an actor never keeps it from passivating.

use actix::prelude::*;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::super::entity::Entity;
use super::super::inspect::{ActorState, InspectError, TopicView, TraceKind, TraceOutcome, TraceView};
use super::super::schedule;
use super::{EntityActor, Reply};

/// What the inspector asks of an actor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe {
    State,
    Trace,
    /// The database as `sqlite3_serialize` writes it, refused when larger than this many bytes.
    Database {
        max_bytes: u64,
    },
}

/// The actor's answer to a [`Probe`].
pub(crate) enum Probed {
    State(ActorState),
    Trace(TraceView),
    Database(Vec<u8>),
}

pub(crate) struct Inspect {
    pub(crate) probe: Probe,
    pub(crate) reply: Reply<Probed, InspectError>,
}

impl Message for Inspect {
    type Result = ();
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    outbox: i64,
    #[diesel(sql_type = BigInt)]
    dead_letters: i64,
    #[diesel(sql_type = BigInt)]
    schedules: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_due: Option<i64>,
}

#[derive(QueryableByName)]
struct Size {
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

impl<E: Entity> Handler<Inspect> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, m: Inspect, _: &mut Context<Self>) {
        // Not `begin()`: inspection is not activity (the idle timer and eviction order stay as they were).
        if !self.core.is_open() {
            let _ = m.reply.send(Err(self.unavailable()));
            return;
        }
        let res = match m.probe {
            Probe::State => self.inspect_state().map(Probed::State),
            Probe::Trace => {
                let clock = self.shared().clock_ms();
                Ok(Probed::Trace(self.core.trace.view(clock, schedule::now_ms())))
            }
            Probe::Database { max_bytes } => self.serialise(max_bytes).map(Probed::Database),
        };
        let _ = m.reply.send(res.map_err(super::super::error::CallError::Handler));
    }
}

impl<E: Entity> EntityActor<E> {
    /// Records a message that ended now in the actor's trace (`since` from `Trace::start`).
    #[inline]
    pub(super) fn traced(
        &mut self,
        name: &'static str,
        kind: TraceKind,
        outcome: TraceOutcome,
        since: Option<std::time::Instant>,
    ) {
        let clock = self.shared().clock_ms();
        self.core.trace.record(name, kind, outcome, since, None, clock);
    }

    fn inspect_state(&mut self) -> Result<ActorState, InspectError> {
        // Committed state only: mutations waiting for their batch are counted, not flushed (that would change when
        // the batch commits).
        let counts: Counts = diesel::sql_query(
            "SELECT (SELECT COUNT(*) FROM _foundry_outbox) AS outbox, \
                    (SELECT COUNT(*) FROM _foundry_dead_letters) AS dead_letters, \
                    (SELECT COUNT(*) FROM _foundry_schedules) AS schedules, \
                    (SELECT MIN(due_at_ms) FROM _foundry_schedules) AS next_due",
        )
        .get_result(self.core.conn())
        .map_err(|e| InspectError::Snapshot(e.to_string()))?;
        let mut topics: Vec<TopicView> = self
            .core
            .versions
            .iter()
            .map(|(topic, version)| TopicView { topic: topic.clone(), version: *version, subscribers: 0 })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        let clock = self.shared().clock_ms();
        Ok(ActorState {
            idle_ms: clock.saturating_sub(self.core.last_activity_ms),
            topics,
            outbox_pending: counts.outbox,
            dead_letters: counts.dead_letters,
            delivering: self.core.outbox.in_flight,
            schedules: counts.schedules,
            next_due_ms: counts.next_due,
            pending_mutations: self.core.pending.len(),
            background_tasks: self.core.background_count(),
            consecutive_failures: self.core.failures,
            traced: self.core.trace.len(),
        })
    }

    fn serialise(&mut self, max_bytes: u64) -> Result<Vec<u8>, InspectError> {
        let size: Size = diesel::sql_query(
            "SELECT (SELECT page_count FROM pragma_page_count()) * (SELECT page_size FROM pragma_page_size()) AS bytes",
        )
        .get_result(self.core.conn())
        .map_err(|e| InspectError::Snapshot(e.to_string()))?;
        let bytes = size.bytes.max(0) as u64;
        if bytes > max_bytes {
            return Err(InspectError::TooLarge { bytes, max: max_bytes });
        }
        // One copy of the committed pages, made here on the actor's thread (a memory copy, no I/O beyond pages not
        // cached yet): everything else runs on the copy, elsewhere.
        let serialised = self.core.conn().serialize_database_to_buffer();
        let bytes = serialised.try_as_slice().map_err(|e| InspectError::Snapshot(e.to_string()))?.to_vec();
        Ok(bytes)
    }
}
