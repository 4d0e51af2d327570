//! The bounded per-actor trace of recent messages: which message, of which sort, how it ended, how long it took and
//! when. A small ring in the actor's `Core`, written by the actor alone (no lock), read through the inspector.

use std::collections::VecDeque;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What sort of message a trace entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    Read,
    Mutation,
    Command,
    /// An outbox message from another actor.
    Delivery,
    /// A durable schedule of the actor's own that fired.
    Schedule,
}

/// How a traced message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraceOutcome {
    Ok,
    /// The handler answered its own error; a mutation's writes were rolled back.
    Refused,
    /// The handler panicked; the actor restarted from its database.
    Panicked,
    /// Nothing of it was kept for another reason: the commit failed, or a schedule's message has no handler.
    Failed,
}

/// One traced message as the ring keeps it: 32 bytes, no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Traced {
    name: &'static str,
    /// The runtime's coarse clock (ms since it started) when the message ended.
    at_clock_ms: u64,
    micros: u32,
    kind: TraceKind,
    outcome: TraceOutcome,
}

/// The ring. Capacity 0 records nothing and reads no clock.
#[derive(Debug)]
pub(crate) struct Trace {
    cap: usize,
    ring: VecDeque<Traced>,
    /// Messages recorded since the actor was activated (the ring holds the last `cap` of them).
    recorded: u64,
}

impl Trace {
    pub(crate) fn new(cap: usize) -> Self {
        // Allocated on first use: an actor that handles few messages before passivating never fills it.
        Trace { cap, ring: VecDeque::new(), recorded: 0 }
    }

    /// When a message began, if the trace is on (the only clock read a message costs besides its end).
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        (self.cap > 0).then(Instant::now)
    }

    /// Records a message that began at `since` (from [`Trace::start`]) and ended at `end` (now when `None`).
    #[inline]
    pub(crate) fn record(
        &mut self,
        name: &'static str,
        kind: TraceKind,
        outcome: TraceOutcome,
        since: Option<Instant>,
        end: Option<Instant>,
        clock_ms: u64,
    ) {
        if self.cap == 0 {
            return;
        }
        let micros = since.map_or(0, |s| {
            let end = end.unwrap_or_else(Instant::now);
            u32::try_from(end.saturating_duration_since(s).as_micros()).unwrap_or(u32::MAX)
        });
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back(Traced { name, at_clock_ms: clock_ms, micros, kind, outcome });
        self.recorded += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// The entries, newest first, with wall-clock times: `now_unix_ms` is the wall clock at `now_clock_ms`.
    pub(crate) fn view(&self, now_clock_ms: u64, now_unix_ms: i64) -> TraceView {
        let entries = self
            .ring
            .iter()
            .rev()
            .map(|t| TraceEntry {
                message: t.name.to_owned(),
                kind: t.kind,
                outcome: t.outcome,
                duration_us: u64::from(t.micros),
                at_ms: now_unix_ms - now_clock_ms.saturating_sub(t.at_clock_ms) as i64,
            })
            .collect();
        TraceView { live: true, size: self.cap, recorded: self.recorded, entries }
    }
}

/// One actor's recent messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceView {
    /// Whether the actor is live: a passivated actor has no trace (it covers the current activation only).
    pub live: bool,
    /// The ring's size (`RuntimeConfig::trace_size`, `serve --trace-size`); 0: tracing is off.
    pub size: usize,
    /// Messages traced since the actor was activated; the ring keeps the last `size`.
    pub recorded: u64,
    /// Newest first.
    pub entries: Vec<TraceEntry>,
}

impl TraceView {
    pub(crate) fn not_live(size: usize) -> Self {
        TraceView { live: false, size, recorded: 0, entries: Vec::new() }
    }
}

/// One traced message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceEntry {
    /// The message's type name (a schedule's wire name).
    pub message: String,
    pub kind: TraceKind,
    pub outcome: TraceOutcome,
    /// From the actor taking it up to its answer (for a mutation: to its batch's commit).
    pub duration_us: u64,
    /// When it ended (ms since the Unix epoch; to the runtime clock's 2 ms).
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_counts_all() {
        let mut t = Trace::new(3);
        for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let outcome = if i == 3 { TraceOutcome::Refused } else { TraceOutcome::Ok };
            t.record(name, TraceKind::Read, outcome, t.start(), None, 10 * i as u64);
        }
        let v = t.view(40, 1_000_000);
        assert_eq!(v.recorded, 5);
        let names: Vec<&str> = v.entries.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(names, ["e", "d", "c"]);
        assert_eq!(v.entries[1].outcome, TraceOutcome::Refused);
        assert_eq!(v.entries[0].at_ms, 1_000_000);
        assert_eq!(v.entries[2].at_ms, 1_000_000 - 20);
    }

    #[test]
    fn an_entry_is_32_bytes() {
        // What RuntimeConfig::trace_size's memory figure (32 entries: 1 KiB per actor) rests on.
        assert_eq!(std::mem::size_of::<Traced>(), 32);
    }

    #[test]
    fn size_zero_records_nothing() {
        let mut t = Trace::new(0);
        assert!(t.start().is_none());
        t.record("a", TraceKind::Mutation, TraceOutcome::Ok, None, None, 0);
        let v = t.view(0, 0);
        assert_eq!((v.recorded, v.entries.len(), v.size), (0, 0, 0));
    }
}
