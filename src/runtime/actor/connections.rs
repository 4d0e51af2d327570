//! The actor's side of connections and events: accepting a subscriber (`before_connect`, the table entry, the topic
//! subscription, `on_connect`), running `on_disconnect` when a connection ended, and publishing committed events to
//! the connections' queues.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use super::super::connection::{
    Connect, ConnectError, Connection, ConnectionId, ConnectionInfo, Entry, Event, EventQueue, PendingEvent,
};
use super::super::entity::Entity;
use super::super::error::CallError;
use super::super::topic::lock;
use super::{panic_text, Core, EntityActor, Reply};

/// Make a subscriber of a topic a connection (see [`Entity::before_connect`]).
pub struct ConnectTopic {
    pub(crate) request: Connect,
    pub(crate) reply: Reply<Connection, ConnectError>,
}
impl Message for ConnectTopic {
    type Result = ();
}

/// A connection ended: run `on_disconnect`.
pub(crate) struct Disconnected {
    pub(crate) info: ConnectionInfo,
    pub(crate) reply: Reply<(), std::convert::Infallible>,
}
impl Message for Disconnected {
    type Result = ();
}

/// A committed event with its topic and version, ready for the queues.
pub(crate) struct Outgoing {
    to: Option<ConnectionId>,
    event: Arc<Event>,
}

impl<E: Entity> Core<E> {
    /// Dates a committed event with its topic's version now (its transaction's, or the latest for an event emitted
    /// outside one); an event to a connection that has ended is dropped.
    pub(crate) fn stamp(&self, ev: PendingEvent) -> Option<Outgoing> {
        let topic = match (ev.topic, ev.to) {
            (Some(topic), _) => topic,
            (None, Some(id)) => {
                let entry = self.shared().conns.get(E::KIND, &self.encoded, id)?;
                let topic = lock(&entry.info).topic.clone();
                topic
            }
            (None, None) => return None,
        };
        let version = self.version(&topic);
        Some(Outgoing { to: ev.to, event: Arc::new(Event { topic, name: ev.name, payload: ev.payload, version }) })
    }

    /// An event emitted through `EntityCtx` outside a transaction: published when the command or callback returns.
    pub(crate) fn emitted(&mut self, ev: PendingEvent) {
        if let Some(out) = self.stamp(ev) {
            self.written_events.push(out);
        }
    }
}

impl<E: Entity> EntityActor<E> {
    /// Hands committed events to the queues of the connections they are for; never waits (a full queue counts the
    /// event as lost for that connection only).
    pub(crate) fn publish_events(&self, events: Vec<Outgoing>) {
        let conns = &self.core.shared().conns;
        for out in events {
            match out.to {
                Some(id) => {
                    if let Some(entry) = conns.get(E::KIND, &self.core.encoded, id) {
                        entry.queue.push(out.event);
                    }
                }
                None => {
                    for queue in conns.queues(E::KIND, &self.core.encoded, &out.event.topic) {
                        queue.push(out.event.clone());
                    }
                }
            }
        }
    }
}

impl<E: Entity> Handler<ConnectTopic> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, c: ConnectTopic, ctx: &mut Context<Self>) {
        let ConnectTopic { request, reply } = c;
        if !self.begin() {
            let _ = reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        let EntityActor { entity, core } = self;
        let conn = core.conn();
        let state = match catch_unwind(AssertUnwindSafe(|| entity.before_connect(&request, conn))) {
            Ok(Ok(state)) => state,
            Ok(Err(refusal)) => {
                let _ = reply.send(Err(CallError::Handler(ConnectError::Refused(refusal))));
                return;
            }
            Err(p) => return self.hook_panicked(ctx, reply, "before_connect", &panic_text(&p)),
        };
        let shared = self.core.registry.inner.shared.clone();
        let sub = shared.hub.subscribe(E::KIND, &self.core.encoded, &request.topic);
        // The first frame is the current snapshot: without one (an unknown topic) there is no connection.
        if let Err(e) = self.publish_current(&request.topic) {
            let _ = reply.send(Err(CallError::Handler(ConnectError::Snapshot(e))));
            return;
        }
        let id = shared.conns.next_id();
        let info = ConnectionInfo { id, topic: request.topic, caller: request.caller, params: request.params, state };
        let queue = Arc::new(EventQueue::default());
        let entry = Arc::new(Entry { info: Mutex::new(info.clone()), queue: queue.clone() });
        shared.conns.insert(E::KIND, &self.core.encoded, entry);
        // From here the handle ends the connection however this goes: a panicking hook or a caller that went away
        // drops it, and its drop runs `on_disconnect`.
        let (registry, key) = (self.core.registry.clone(), self.core.key.clone());
        let handle = Connection::new(id, sub, queue, Box::new(move || registry.connection_ended(key, id)));
        match catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| e.on_connect(c, &info)))) {
            Ok(()) => {
                self.core.failures = 0;
                let _ = reply.send(Ok(handle));
            }
            Err(p) => {
                drop(handle);
                self.hook_panicked(ctx, reply, "on_connect", &panic_text(&p));
            }
        }
    }
}

impl<E: Entity> EntityActor<E> {
    fn hook_panicked<T, Err>(
        &mut self,
        ctx: &mut Context<Self>,
        reply: Reply<T, Err>,
        hook: &'static str,
        panic: &str,
    ) {
        let key = self.core.encoded.clone();
        let _ = reply.send(Err(CallError::Panicked { kind: E::KIND, key, message: hook, panic: panic.to_owned() }));
        self.restart(ctx, panic);
    }
}

impl<E: Entity> Handler<Disconnected> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, d: Disconnected, ctx: &mut Context<Self>) {
        let Disconnected { info, reply } = d;
        if !self.begin() {
            let _ = reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        match catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| e.on_disconnect(c, &info)))) {
            Ok(()) => {
                let _ = reply.send(Ok(()));
            }
            Err(p) => self.hook_panicked(ctx, reply, "on_disconnect", &panic_text(&p)),
        }
    }
}
