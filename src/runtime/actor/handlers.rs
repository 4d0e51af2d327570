//! The actix handlers: one per message type, each a thin shell over the concern it enters (a read runs at once on
//! the committed state, a mutation joins the pending batch, a command runs in the actor's context).

use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::prelude::*;

use super::super::batch::{not_durable, DeliverItem, ItemResult, MutationItem};
use super::super::entity::{message_name, Command, Delivery, Entity, Mutation, Read};
use super::super::error::CallError;
use super::super::inspect::{TraceKind, TraceOutcome};
use super::{panic_text, Deliver, EntityActor, Exec, Mutate, Query};

macro_rules! span {
    ($self:ident, $msg:ty) => {
        tracing::debug_span!("message", kind = E::KIND, key = %$self.core.encoded, msg = message_name::<$msg>())
    };
}

impl<E: Entity, M: Read<Entity = E>> Handler<Query<M>> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, q: Query<M>, ctx: &mut Context<Self>) {
        let span = span!(self, M);
        let _enter = span.enter();
        if !self.begin() {
            let _ = q.reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        if self.shipping() {
            // Cluster mode: the state includes a commit the log does not have yet; answer once it does.
            self.after_durable(ctx, move |act, ctx, shipped| match shipped {
                Ok(()) => act.handle(q, ctx),
                Err(e) => {
                    let _ = q.reply.send(Err(not_durable(&e, E::KIND, &act.core.encoded)));
                }
            });
            return;
        }
        let since = self.core.trace.start();
        let Query { msg, reply } = q;
        let EntityActor { entity, core } = self;
        let conn = core.conn();
        match catch_unwind(AssertUnwindSafe(|| msg.read(entity, conn))) {
            Ok(r) => {
                self.core.failures = 0;
                let outcome = if r.is_ok() { TraceOutcome::Ok } else { TraceOutcome::Refused };
                let _ = reply.send(r.map_err(CallError::Handler));
                self.traced(message_name::<M>(), TraceKind::Read, outcome, since);
            }
            Err(p) => {
                self.traced(message_name::<M>(), TraceKind::Read, TraceOutcome::Panicked, since);
                let panic = panic_text(&p);
                let key = self.core.encoded.clone();
                let _ = reply.send(Err(CallError::Panicked {
                    kind: E::KIND,
                    key,
                    message: message_name::<M>(),
                    panic: panic.clone(),
                }));
                self.restart(ctx, &panic);
            }
        }
    }
}

impl<E: Entity, M: Mutation<Entity = E>> Handler<Mutate<M>> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, m: Mutate<M>, ctx: &mut Context<Self>) {
        let span = span!(self, M);
        let _enter = span.enter();
        if !self.begin() {
            let _ = m.reply.send(Err(self.unavailable()));
            return;
        }
        let since = self.core.trace.start();
        self.core.pending.push(Box::new(MutationItem {
            msg: Some(m.msg),
            result: ItemResult::NotRun,
            reply: m.reply,
            since,
        }));
        self.schedule_flush(ctx);
    }
}

impl<E: Entity, M: Delivery<Entity = E>> Handler<Deliver<M>> for EntityActor<E>
where
    M::Error: std::fmt::Display,
{
    type Result = ();
    fn handle(&mut self, d: Deliver<M>, ctx: &mut Context<Self>) {
        let span = span!(self, M);
        let _enter = span.enter();
        if !self.begin() {
            let _ = d.reply.send(Err(self.unavailable()));
            return;
        }
        self.core.pending.push(Box::new(DeliverItem {
            source: d.source,
            seq: d.seq,
            msg: Some(d.msg),
            result: ItemResult::NotRun,
            reply: d.reply,
            since: self.core.trace.start(),
        }));
        self.schedule_flush(ctx);
    }
}

impl<E: Entity, C: Command<Entity = E>> Handler<Exec<C>> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, x: Exec<C>, ctx: &mut Context<Self>) {
        let span = span!(self, C);
        let _enter = span.enter();
        if !self.begin() {
            let _ = x.reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        if self.shipping() {
            self.after_durable(ctx, move |act, ctx, shipped| match shipped {
                Ok(()) => act.handle(x, ctx),
                Err(e) => {
                    let _ = x.reply.send(Err(not_durable(&e, E::KIND, &act.core.encoded)));
                }
            });
            return;
        }
        let since = self.core.trace.start();
        let Exec { cmd, reply } = x;
        match catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| cmd.run(e, c)))) {
            Ok(r) => {
                let outcome = if r.is_ok() { TraceOutcome::Ok } else { TraceOutcome::Refused };
                // Cluster mode: what the command wrote is durable before its caller hears back.
                self.after_durable(ctx, move |act, _, shipped| {
                    let answer = match shipped {
                        Ok(()) => r.map_err(CallError::Handler),
                        Err(e) => Err(not_durable(&e, E::KIND, &act.core.encoded)),
                    };
                    let _ = reply.send(answer);
                });
                self.traced(message_name::<C>(), TraceKind::Command, outcome, since);
            }
            Err(p) => {
                self.traced(message_name::<C>(), TraceKind::Command, TraceOutcome::Panicked, since);
                let panic = panic_text(&p);
                let key = self.core.encoded.clone();
                let _ = reply.send(Err(CallError::Panicked {
                    kind: E::KIND,
                    key,
                    message: message_name::<C>(),
                    panic: panic.clone(),
                }));
                self.restart(ctx, &panic);
            }
        }
    }
}
