//! Procedures (cluster mode): work that must run on the node serving a shard without being one actor's message — a
//! flow that calls several actors and a node-local resource (a task's workspace directory, the git operations on
//! it). The caller asks [`Runtime::on_owner`]: `None` means this node serves the shard (or there is no cluster) and
//! the caller runs the work itself; otherwise the request went to the node serving the shard, which ran the
//! procedure registered under the same name ([`Runtime::serve_procedure`]) and sent back its output or its error.
//!
//! Like a command, a procedure may act outside any database, so an attempt that got no answer is not repeated (the
//! caller hears `Timeout`); one that found nobody serving the shard, or a node that just lost it, is tried again
//! until [`PROCEDURE_DEADLINE`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::CallError;
use super::placement::{shard_of, Route, ShardId};
use super::remote::{exchange, CallClass, Exchange, Reply, Request, WireError};
use super::system::{Runtime, Shared};

/// How long a caller waits for the node serving the shard to run a procedure (git work takes a while).
pub const PROCEDURE_DEADLINE: Duration = Duration::from_secs(120);

/// Work run on the node serving [`Procedure::placement`]'s shard, with its input and output crossing as JSON.
pub trait Procedure: Serialize + DeserializeOwned + Send + 'static {
    /// A stable wire name, unique in the process.
    const NAME: &'static str;
    type Output: Serialize + DeserializeOwned + Send + 'static;
    type Error: Serialize + DeserializeOwned + Send + 'static;
    /// The placement key whose shard's node runs it (as the actors it works on are placed).
    fn placement(&self) -> String;
}

/// A registered procedure, type-erased: JSON in, the reply out.
pub(crate) type ProcedureFn = Arc<dyn Fn(String) -> BoxFuture<'static, Reply> + Send + Sync>;

/// The registered procedures by name.
#[derive(Default)]
pub(crate) struct Procedures(std::sync::RwLock<HashMap<&'static str, ProcedureFn>>);

impl Procedures {
    fn get(&self, name: &str) -> Option<ProcedureFn> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

impl Runtime {
    /// Registers `run` as the procedure `P` this node runs for callers on other nodes (callers here run their own
    /// path, see [`Runtime::on_owner`]). Its errors cross as a call's: the procedure's own typed, `not_owner` (this
    /// node lost the shard meanwhile) making the caller try the next owner, the rest as storage errors.
    pub fn serve_procedure<P, F, Fut>(&self, run: F)
    where
        P: Procedure,
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<P::Output, CallError<P::Error>>> + Send + 'static,
    {
        let run = Arc::new(run);
        let f: ProcedureFn = Arc::new(move |payload: String| {
            let run = run.clone();
            Box::pin(async move {
                let input = match serde_json::from_str::<P>(&payload) {
                    Ok(input) => input,
                    Err(e) => return Reply::Failed { error: WireError::bad_request(format!("{}: {e}", P::NAME)) },
                };
                match run(input).await {
                    Ok(output) => match serde_json::to_string(&output) {
                        Ok(output) => Reply::Returned { output },
                        Err(e) => Reply::Failed { error: WireError::failed(format!("output does not encode: {e}")) },
                    },
                    Err(e) => Reply::Failed { error: WireError::from_call(e) },
                }
            })
        });
        self.shared().procedures.0.write().unwrap_or_else(|p| p.into_inner()).insert(P::NAME, f);
    }

    /// Runs `p` on the node serving its shard if that is another node: `Some` with its answer. `None`: run it here
    /// (this node serves the shard, or there is no cluster).
    pub async fn on_owner<P: Procedure>(&self, p: &P) -> Option<Result<P::Output, CallError<P::Error>>> {
        let shared = self.shared();
        let (transport, router) = (shared.config.transport.as_ref()?, shared.config.router.as_ref()?);
        let placement = p.placement();
        let shard = shard_of(&placement);
        if router.route(shard) == Route::Local {
            return None;
        }
        let storage = |message: String| CallError::Storage { kind: "procedure", key: placement.clone(), message };
        let payload = match serde_json::to_string(p) {
            Ok(payload) => payload,
            Err(e) => return Some(Err(storage(format!("{} does not encode: {e}", P::NAME)))),
        };
        let body = Request::Procedure { name: P::NAME.to_owned(), shard: shard.0, payload }.encode();
        let to = Exchange {
            shard,
            kind: "procedure",
            key: &placement,
            deadline: Instant::now() + PROCEDURE_DEADLINE,
            class: CallClass::Command,
        };
        let decode_err = |w: WireError, kind, key: &str| w.into_call::<P::Error>(kind, key);
        let answer = match exchange(transport.as_ref(), decode_err, body, to).await {
            Ok(output) => {
                serde_json::from_str(&output).map_err(|e| storage(format!("the answer does not decode: {e}")))
            }
            Err(e) => Err(e),
        };
        Some(answer)
    }
}

/// Serves a `Procedure` request: only while this node serves the shard (else the caller tries the next owner).
pub(crate) async fn serve(shared: &Shared, name: &str, shard: u16, payload: String) -> Reply {
    let served = shared.config.router.as_ref().is_none_or(|r| r.route(ShardId(shard)) == Route::Local);
    if !served {
        return Reply::Failed { error: WireError::not_owner(ShardId(shard)) };
    }
    match shared.procedures.get(name) {
        Some(run) => run(payload).await,
        None => Reply::Failed { error: WireError::bad_request(format!("no procedure {name} here")) },
    }
}
