//! Cluster mode's durability seam: the [`CommitLog`] an actor's commits are appended to before anyone hears of them
//! (replies, topics, events, outbox deliveries), and what an actor keeps to feed it ([`Durable`]). The runtime knows
//! no store: `cluster::log` implements the trait on PostgreSQL, fenced by the shard's lease epoch.
//!
//! The local file is a cache of the log. An actor ships its commits as numbered entries (`txid` 1, 2, …): the first is
//! a snapshot of the whole file, later ones the pages its commits wrote (`wal.rs`), and every so often a snapshot
//! again (compaction). A file is trusted at activation only if it was closed cleanly with everything shipped — the
//! `-shipped` marker beside it names the entry it matches — and that entry is still the log's head; otherwise the
//! file is rebuilt from the log. A crash therefore costs one restore, never a divergence between file and log.
//!
//! Single-node mode has no commit log: none of this runs.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::placement::ShardId;
use super::wal::{self, WalCursor};

/// Compaction: a snapshot replaces the log once this many entries followed the last one...
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 1_000;
/// ...or once they hold this many bytes.
pub const SNAPSHOT_EVERY_BYTES: u64 = 4 << 20;
/// The runtime checkpoints an actor's WAL (truncating it) once this much of it has been shipped.
pub const CHECKPOINT_WAL_BYTES: u64 = 4 << 20;

/// Which actor a log call is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    pub kind: &'static str,
    pub key: String,
    pub shard: ShardId,
}

/// Where an actor's log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The last entry appended.
    pub txid: u64,
    /// The entry the newest snapshot stands for (restore starts there).
    pub snapshot_txid: u64,
    /// Bytes of the entries after that snapshot.
    pub log_bytes: u64,
    /// The actor's wake time in the log (see [`Append::wake`]): `None` if it has none.
    pub wake_at_ms: Option<i64>,
}

/// One appended entry: the whole file, or the pages of the commits since the previous entry, as stored
/// (compressed: `wal::pack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Snapshot(Vec<u8>),
    Pages(Vec<u8>),
}

impl Entry {
    pub fn len(&self) -> usize {
        match self {
            Entry::Snapshot(b) | Entry::Pages(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The wake time that means "at once": the actor has undelivered outbox rows or owes work.
pub const WAKE_NOW: i64 = 0;

/// An append: entry `txid` must directly follow the log's head (`txid - 1`; 0 for an actor with no log yet).
#[derive(Debug, Clone)]
pub struct Append {
    pub actor: LogKey,
    pub txid: u64,
    pub entry: Entry,
    /// The actor's wake state as of this entry, when it changed since the last one shipped (`None`: unchanged, the
    /// common case, which writes nothing more): `Some(Some(t))` it must run without a caller at `t` (ms since the
    /// Unix epoch; [`WAKE_NOW`]: at once), `Some(None)` it need not. Stored with the entry, in the same fenced
    /// write, so the wake index never disagrees with the log; a node gaining the shard reads it ([`CommitLog::wakes`]).
    pub wake: Option<Option<i64>>,
}

/// What a write in flight was, to account for it once it lands.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    pub txid: u64,
    /// An entry was appended (`false`: only the wake state changed, at the same head).
    pub entry: bool,
    pub snapshot: bool,
    pub bytes: u64,
    pub wake: Option<Option<i64>>,
}

impl Append {
    pub fn shipped(&self) -> Shipped {
        Shipped {
            txid: self.txid,
            entry: true,
            snapshot: matches!(self.entry, Entry::Snapshot(_)),
            bytes: self.entry.len() as u64,
            wake: self.wake,
        }
    }
}

/// What an actor ships to its log: an entry (with its wake state if that changed), or, when nothing was committed
/// since the last entry but the wake state changed (an outbox that stayed empty, a corrected schedule), only that.
#[derive(Debug, Clone)]
pub enum Ship {
    Append(Append),
    Wake { actor: LogKey, txid: u64, wake_at_ms: Option<i64> },
}

impl Ship {
    pub fn shipped(&self) -> Shipped {
        match self {
            Ship::Append(a) => a.shipped(),
            Ship::Wake { txid, wake_at_ms, .. } => {
                Shipped { txid: *txid, entry: false, snapshot: false, bytes: 0, wake: Some(*wake_at_ms) }
            }
        }
    }

    /// Sends it to `log`.
    pub fn send(self, log: &dyn CommitLog) -> BoxFuture<'static, Result<(), LogError>> {
        match self {
            Ship::Append(a) => log.append(a),
            Ship::Wake { actor, txid, wake_at_ms } => log.set_wake(&actor, txid, wake_at_ms),
        }
    }
}

/// An actor that must run without a caller, as a node gaining its shard learns from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub kind: String,
    /// The encoded key.
    pub key: String,
    /// When ([`WAKE_NOW`]: at once).
    pub at_ms: i64,
}

/// What rebuilding an actor takes: its newest snapshot and the entries after it, in order.
#[derive(Debug, Clone)]
pub struct History {
    pub snapshot_txid: u64,
    pub snapshot: Vec<u8>,
    pub entries: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The append was refused by the fence: this node does not hold the shard's lease at the epoch it appended
    /// with, or the log moved on without it (another owner appended). Nothing was appended.
    #[error("not the owner of shard {0}: the commit log refused the append")]
    Fenced(ShardId),
    /// The store could not be reached or failed; an append may or may not have landed.
    #[error("commit log unavailable: {0}")]
    Unavailable(String),
    /// The log holds something this build cannot replay.
    #[error("commit log is damaged: {0}")]
    Corrupt(String),
}

/// The durable record of every actor's commits (cluster mode). Implementations fence appends by shard ownership.
pub trait CommitLog: Send + Sync + fmt::Debug + 'static {
    /// The actor's head, `None` if it has no log (never created, or destroyed).
    fn head(&self, actor: &LogKey) -> BoxFuture<'static, Result<Option<Head>, LogError>>;
    /// Everything needed to rebuild the actor at its head.
    fn history(&self, actor: &LogKey) -> BoxFuture<'static, Result<Option<History>, LogError>>;
    /// Appends one entry, fenced (see [`Append`]); resolves once it is durable.
    fn append(&self, append: Append) -> BoxFuture<'static, Result<(), LogError>>;
    /// Deletes the actor's log (it was destroyed) and its wake state, fenced like an append; `txid` is the head the
    /// caller knows.
    fn forget(&self, actor: &LogKey, txid: u64) -> BoxFuture<'static, Result<(), LogError>>;
    /// Sets the actor's wake state alone (see [`Append::wake`]), fenced like an append, at head `txid`.
    fn set_wake(&self, actor: &LogKey, txid: u64, wake_at_ms: Option<i64>) -> BoxFuture<'static, Result<(), LogError>>;
    /// The actors of `shards` that must run without a caller, and when.
    fn wakes(&self, shards: Vec<ShardId>) -> BoxFuture<'static, Result<Vec<Wake>, LogError>>;
}

/// `<file>-shipped`: written after a clean close with every commit shipped; names the entry the file matches.
pub fn marker_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-shipped");
    PathBuf::from(p)
}

/// The entry a cleanly closed file matches, if its marker says so.
pub fn read_marker(db: &Path) -> Option<u64> {
    std::fs::read_to_string(marker_path(db)).ok()?.trim().parse().ok()
}

pub fn write_marker(db: &Path, txid: u64) -> io::Result<()> {
    std::fs::write(marker_path(db), txid.to_string())
}

/// Removes the marker: done when a file is opened, so a crash during its life leaves it untrusted.
pub fn clear_marker(db: &Path) -> io::Result<()> {
    match std::fs::remove_file(marker_path(db)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Rebuilds `db` from `history`: the snapshot, then each entry's pages, written beside it and renamed into place
/// (with any WAL of the old file removed first, so SQLite cannot replay it over the new one).
pub fn restore(db: &Path, history: &History) -> io::Result<()> {
    for (expected, (txid, _)) in (history.snapshot_txid + 1..).zip(&history.entries) {
        if *txid != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("log entry {txid} where {expected} was due"),
            ));
        }
    }
    let tmp = {
        let mut p = db.as_os_str().to_owned();
        p.push("-restoring");
        PathBuf::from(p)
    };
    let rebuilt = (|| {
        let snapshot = wal::unpack(&history.snapshot)
            .map_err(|e| with_context(e, format!("the snapshot at commit {}", history.snapshot_txid)))?;
        std::fs::write(&tmp, snapshot)?;
        let file = std::fs::OpenOptions::new().write(true).open(&tmp)?;
        for (txid, entry) in &history.entries {
            let pages = wal::unpack(entry).map_err(|e| with_context(e, format!("log entry {txid}")))?;
            wal::apply_entry(&file, &pages)?;
        }
        file.sync_all()
    })();
    if let Err(e) = rebuilt {
        // Nothing half-built is left beside the actor's file; the next attempt starts over.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(&tmp, db)
}

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// What an actor keeps to ship its commits: where its log stands and where its WAL was last read.
pub(crate) struct Durable {
    pub log: Arc<dyn CommitLog>,
    pub actor: LogKey,
    /// The head as of the last successful append (0: no log yet, the next append is the first snapshot).
    pub txid: u64,
    pub cursor: WalCursor,
    pub since_snapshot: u64,
    pub log_bytes: u64,
    /// An append is on its way; calls that would reveal state wait for it.
    pub in_flight: bool,
    /// Work was queued behind the write in flight: once it lands, whatever was committed meanwhile ships first.
    pub queued: bool,
    /// An append failed (why): the file may hold commits the log does not, so it is never trusted or shipped again.
    pub poisoned: Option<LogError>,
    pub wake: WakeState,
}

/// What the actor knows of its wake state: the inputs as of its last local commit, and what the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WakeState {
    /// Marked for recovery (undelivered outbox rows, owed work): the same flag the node-local recovery index follows,
    /// but set at the local commit rather than once the batch is released, since the entry shipping that commit
    /// must carry it.
    pub marked: bool,
    /// The earliest schedule, `None` until the actor has read or committed it (nothing is shipped from a guess).
    pub earliest: Option<Option<i64>>,
    /// What the log holds.
    pub shipped: Option<i64>,
}

impl WakeState {
    /// The wake time the log should hold, if the actor knows it.
    pub fn wanted(&self) -> Option<Option<i64>> {
        if self.marked {
            Some(Some(WAKE_NOW))
        } else {
            self.earliest
        }
    }

    /// The change to ship, if the log holds something else.
    pub fn change(&self) -> Option<Option<i64>> {
        self.wanted().filter(|w| *w != self.shipped)
    }

    /// A local commit: it may have marked the actor (outbox rows written, work owed) and moved its earliest schedule.
    pub fn committed(&mut self, marked: bool, schedules: Option<Option<i64>>) {
        self.marked |= marked;
        if schedules.is_some() {
            self.earliest = schedules;
        }
    }
}

impl Durable {
    pub fn new(log: Arc<dyn CommitLog>, actor: LogKey, head: Option<Head>) -> Self {
        let (txid, since_snapshot, log_bytes, shipped) = match head {
            Some(h) => (h.txid, h.txid - h.snapshot_txid, h.log_bytes, h.wake_at_ms),
            None => (0, 0, 0, None),
        };
        Durable {
            log,
            actor,
            txid,
            cursor: WalCursor::new(),
            since_snapshot,
            log_bytes,
            in_flight: false,
            queued: false,
            poisoned: None,
            // Marked if the log says "at once" (as a recovered actor is): its marker is cleared, here and in the
            // log, once it has nothing pending.
            wake: WakeState { marked: shipped == Some(WAKE_NOW), earliest: None, shipped },
        }
    }

    /// Why this actor must not commit or answer any more, if an append failed.
    pub fn failure(&self) -> Option<LogError> {
        self.poisoned.clone()
    }

    /// Whether the next append must be a snapshot: the first one, or the log since the last has grown enough.
    pub fn wants_snapshot(&self) -> bool {
        self.txid == 0 || self.since_snapshot >= SNAPSHOT_EVERY_ENTRIES || self.log_bytes >= SNAPSHOT_EVERY_BYTES
    }

    /// What to ship: the append of what was committed since the last one, if anything was, or else the wake state
    /// alone if only it changed (not before the first entry: a wake state needs an actor in the log).
    pub fn next_ship(&mut self, db: &Path, checkpoint: &mut dyn FnMut() -> io::Result<()>) -> io::Result<Option<Ship>> {
        let wake = self.wake.change();
        match self.next_append(db, checkpoint)? {
            Some(entry) => Ok(Some(Ship::Append(Append { wake, ..entry }))),
            None => Ok(wake.filter(|_| self.txid > 0).map(|wake_at_ms| Ship::Wake {
                actor: self.actor.clone(),
                txid: self.txid,
                wake_at_ms,
            })),
        }
    }

    /// The append that ships what was committed since the last one, if anything was. `checkpoint` truncates the
    /// WAL into the file (for a snapshot, which is the file itself).
    fn next_append(&mut self, db: &Path, checkpoint: &mut dyn FnMut() -> io::Result<()>) -> io::Result<Option<Append>> {
        let wal_path = {
            let mut p = db.as_os_str().to_owned();
            p.push("-wal");
            PathBuf::from(p)
        };
        let pages = self.cursor.read_new(&wal_path)?;
        if pages.is_none() && self.txid != 0 {
            return Ok(None);
        }
        let entry = if self.wants_snapshot() {
            checkpoint()?;
            self.cursor.reset();
            Entry::Snapshot(wal::pack(&std::fs::read(db)?))
        } else {
            Entry::Pages(pages.map(|p| wal::pack(&p.encode())).unwrap_or_default())
        };
        Ok(Some(Append { actor: self.actor.clone(), txid: self.txid + 1, entry, wake: None }))
    }

    /// The write of `shipped` landed.
    pub fn appended(&mut self, shipped: Shipped) {
        if let Some(wake) = shipped.wake {
            self.wake.shipped = wake;
        }
        if !shipped.entry {
            return;
        }
        self.txid = shipped.txid;
        if shipped.snapshot {
            self.since_snapshot = 0;
            self.log_bytes = 0;
        } else {
            self.since_snapshot += 1;
            self.log_bytes += shipped.bytes;
        }
    }

    /// Whether the WAL has grown enough to checkpoint (everything read from it has been shipped by then).
    pub fn wants_checkpoint(&self) -> bool {
        self.cursor.offset() >= CHECKPOINT_WAL_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wake_state_ships_only_what_changed_and_nothing_guessed() {
        let mut w = WakeState { marked: false, earliest: None, shipped: Some(5_000) };
        assert_eq!(w.change(), None, "the earliest schedule is not known yet: the log keeps what it has");
        w.committed(false, None);
        assert_eq!(w.change(), None, "a commit that touched no schedule tells nothing");
        w.committed(false, Some(Some(5_000)));
        assert_eq!(w.change(), None, "the log already holds it");
        w.committed(true, None);
        assert_eq!(w.change(), Some(Some(WAKE_NOW)), "outbox rows: at once, whatever the schedules");
        w.shipped = Some(WAKE_NOW);
        w.committed(false, Some(Some(9_000)));
        assert_eq!(w.change(), None, "still marked: a later commit does not unmark");
        w.marked = false;
        assert_eq!(w.change(), Some(Some(9_000)), "unmarked: back to the earliest schedule");
        w.committed(false, Some(None));
        assert_eq!(w.change(), Some(None), "no schedule left: cleared");
    }
}
