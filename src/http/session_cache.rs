//! This node's cache of resolved session tokens, so that authenticating a request (and re-checking an open
//! WebSocket) is a hash-map lookup instead of a read on the single `auth_directory` actor's mailbox.
//!
//! Correctness: a sign-out on this node forgets the user's entries right after the index entry is removed
//! ([`SessionCache::forget`]), and an epoch keeps a lookup that read the index before that removal from putting the
//! old answer back ([`SessionCache::insert`] re-checks the epoch under the shard lock that `forget` also takes). Expiry
//! is checked on every hit. An entry is trusted for at most `ttl`, which bounds how long a revocation made elsewhere
//! (another node, a direct actor call) takes to be seen. Unknown tokens are never cached: the rate limiter bounds
//! what guessing costs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::actors::auth_directory::ResolvedSession;

const SHARDS: usize = 16;
/// Entries per shard before old ones are dropped (65,536 in all: a few MB).
const SHARD_CAPACITY: usize = 4096;

struct Entry {
    session: ResolvedSession,
    fetched: Instant,
}

pub struct SessionCache {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    epoch: AtomicU64,
    ttl: Duration,
}

impl SessionCache {
    /// A cache trusting entries for `ttl` (zero: never caches).
    pub fn new(ttl: Duration) -> Self {
        SessionCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            epoch: AtomicU64::new(0),
            ttl,
        }
    }

    fn shard(&self, token_hash: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        use std::hash::BuildHasher;
        let i = foldhash::fast::FixedState::with_seed(0).hash_one(token_hash) as usize % SHARDS;
        // A panic while holding a shard cannot leave a map half-updated in a way that matters: entries are whole.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take before looking a token up in the index; hand to [`SessionCache::insert`] with the answer.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The cached live session of `token_hash`, if fresh and not expired at `now_ms`.
    pub fn get(&self, token_hash: &str, now_ms: i64) -> Option<ResolvedSession> {
        let shard = self.shard(token_hash);
        let e = shard.get(token_hash)?;
        (e.fetched.elapsed() < self.ttl && e.session.expires_at_ms > now_ms).then(|| e.session.clone())
    }

    /// Remembers what the index answered for `token_hash`, unless a sign-out happened since `epoch` was taken.
    pub fn insert(&self, token_hash: &str, session: &ResolvedSession, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut shard = self.shard(token_hash);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if shard.len() >= SHARD_CAPACITY {
            let ttl = self.ttl;
            shard.retain(|_, e| e.fetched.elapsed() < ttl);
            if shard.len() >= SHARD_CAPACITY {
                shard.clear();
            }
        }
        shard.insert(token_hash.to_owned(), Entry { session: session.clone(), fetched: Instant::now() });
    }

    /// Forgets `user`'s sessions (one, or all with `None`): call after their index entries are removed.
    pub fn forget(&self, user: &str, session: Option<&str>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, e| e.session.user_id != user || session.is_some_and(|s| s != e.session.session_id));
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, id: &str) -> ResolvedSession {
        ResolvedSession { user_id: user.into(), session_id: id.into(), expires_at_ms: 1_000 }
    }

    #[test]
    fn hits_until_expiry_or_ttl_and_forgets_by_user_and_session() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let e = cache.epoch();
        cache.insert("h1", &session("u1", "s1"), e);
        cache.insert("h2", &session("u1", "s2"), e);
        cache.insert("h3", &session("u2", "s3"), e);
        assert_eq!(cache.get("h1", 999), Some(session("u1", "s1")));
        assert_eq!(cache.get("h1", 1_000), None, "expired at its expiry");
        cache.forget("u1", Some("s1"));
        assert_eq!(cache.get("h1", 0), None);
        assert!(cache.get("h2", 0).is_some(), "another session of the user stays");
        cache.forget("u1", None);
        assert_eq!(cache.get("h2", 0), None);
        assert!(cache.get("h3", 0).is_some(), "another user stays");

        let stale = SessionCache::new(Duration::ZERO);
        stale.insert("h1", &session("u1", "s1"), stale.epoch());
        assert_eq!(stale.get("h1", 0), None, "a zero ttl caches nothing");
    }

    #[test]
    fn a_lookup_that_started_before_a_sign_out_does_not_put_its_answer_back() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let before = cache.epoch();
        cache.forget("u1", None);
        cache.insert("h1", &session("u1", "s1"), before);
        assert_eq!(cache.get("h1", 0), None);
    }

    #[test]
    fn a_full_shard_makes_room() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let e = cache.epoch();
        for i in 0..SHARDS * SHARD_CAPACITY * 2 {
            cache.insert(&format!("h{i}"), &session("u", "s"), e);
        }
        assert!(cache.len() <= SHARDS * SHARD_CAPACITY, "{}", cache.len());
    }
}
