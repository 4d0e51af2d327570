//! Who is viewing a task: the users connected to its `task` topic, one [`TaskViewer`] per user with how many
//! connections (tabs, devices) they have open, in the task's snapshot (`viewers`).
//!
//! Derived from the runtime's connection table, never stored: the connection hooks publish the new list as a patch
//! of `/viewers` whenever a viewer connects or leaves, and activation rebuilds it from the table, so a crash or a
//! restart cannot leave a viewer behind. The list lives in the entity only as a copy the snapshot reads.

use serde::{Deserialize, Serialize};

use super::{Task, TOPIC};
use crate::runtime::{ConnectionInfo, EntityCtx, PatchOp};

/// A user viewing the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskViewer {
    pub user_id: String,
    /// The user's connections to the task's topic (at least 1).
    pub connections: u32,
}

/// The viewers among `conns`: subscribers of the `task` topic with a caller, by user id.
pub fn viewers(conns: &[ConnectionInfo]) -> Vec<TaskViewer> {
    let mut by_user = std::collections::BTreeMap::<&str, u32>::new();
    for c in conns.iter().filter(|c| c.topic == TOPIC) {
        if let Some(user) = &c.caller {
            *by_user.entry(user).or_default() += 1;
        }
    }
    by_user.into_iter().map(|(user, connections)| TaskViewer { user_id: user.to_owned(), connections }).collect()
}

/// Whether a connection counts as a viewer.
fn is_viewer(conn: &ConnectionInfo) -> bool {
    conn.topic == TOPIC && conn.caller.is_some()
}

/// On activation (and after a restart): the viewers as the table has them, without publishing (the topic's
/// subscribers hold the list as of the last connect or disconnect, which published it).
pub(super) fn rebuild(task: &mut Task, ctx: &mut EntityCtx<'_, Task>) {
    task.viewers = viewers(&ctx.connections());
}

/// A viewer connected or left: publishes the list. Always published, even if the copy held already says the same:
/// an actor woken for a disconnect rebuilt its copy without the viewer who left, but its subscribers still list them.
pub(super) fn changed(task: &mut Task, ctx: &mut EntityCtx<'_, Task>, conn: &ConnectionInfo) {
    if !is_viewer(conn) {
        return;
    }
    task.viewers = viewers(&ctx.connections());
    let value = match serde_json::to_value(&task.viewers) {
        Ok(v) => v,
        Err(e) => return tracing::error!(task = %task.key.task, error = %e, "viewers do not serialise"),
    };
    let published = ctx.write(|tx| {
        tx.patch(TOPIC, vec![PatchOp::replace("/viewers", value)]);
        Ok::<_, diesel::result::Error>(())
    });
    if let Err(e) = published {
        tracing::warn!(task = %task.key.task, error = %e, "could not publish the task's viewers");
    }
}
