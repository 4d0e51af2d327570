//! Per-client rate limits, in memory on this node: a token bucket per session token (every route that takes a
//! [`Caller`](super::Caller), WebSocket upgrades included: counted before the token is even looked up) and one per
//! client address for the sign-in routes (dev sign-in, GitHub OAuth start and callback). Over the limit: 429
//! `rate_limited` with `Retry-After` in whole seconds (at least 1).
//!
//! A bucket holds `burst` requests and refills at `per_minute`; a limit of 0 disables that class. Memory is bounded:
//! at most [`MAX_BUCKETS`] buckets per class; a full shard first drops buckets that have refilled completely (they
//! are indistinguishable from no bucket), then the least recently used one.
//!
//! The client address is the TCP peer's. Behind a reverse proxy that is the proxy for everyone, so
//! [`RateLimits::trust_forwarded_for`] (`--trust-forwarded-for`) takes the last `X-Forwarded-For` entry instead: the
//! address the proxy itself appended. Never set it without such a proxy, or clients choose their own address.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use super::ApiError;

/// Buckets kept per class at most (about 40 bytes each).
pub const MAX_BUCKETS: usize = 100_000;
const SHARDS: usize = 16;

/// One class's limit: `per_minute` sustained, `burst` at once. `per_minute == 0`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { per_minute: 0, burst: 0 };
}

/// The limits of a server. The default is none (library users and in-process tests); `foundry serve` sets its
/// flags' defaults (README).
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Per session token: every authenticated route and WebSocket upgrade.
    pub token: RateLimit,
    /// Per client address: dev sign-in, GitHub OAuth start and callback.
    pub sign_in: RateLimit,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a proxy that appends it).
    pub trust_forwarded_for: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { token: RateLimit::OFF, sign_in: RateLimit::OFF, trust_forwarded_for: false }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A set of token buckets by key (a hash of the token or address: nothing secret is kept).
pub struct Limiter {
    limit: RateLimit,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    shards: Vec<Mutex<HashMap<u64, Bucket>>>,
}

impl Limiter {
    pub fn new(limit: RateLimit, max_buckets: usize) -> Self {
        Limiter {
            limit,
            per_shard: max_buckets.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn enabled(&self) -> bool {
        self.limit.per_minute > 0
    }

    fn per_second(&self) -> f64 {
        f64::from(self.limit.per_minute) / 60.0
    }

    fn capacity(&self) -> f64 {
        f64::from(self.limit.burst.max(1))
    }

    /// Takes one request from `key`'s bucket at `now`: `Err(seconds)` to wait when it is empty.
    pub fn take(&self, key: &[u8], now: Instant) -> Result<(), u32> {
        if !self.enabled() {
            return Ok(());
        }
        let hash = self.hasher.hash_one(key);
        let (rate, cap) = (self.per_second(), self.capacity());
        // A poisoned shard only means another request panicked mid-update of a counter: keep counting.
        let mut shard = self.shards[hash as usize % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
        if !shard.contains_key(&hash) && shard.len() >= self.per_shard {
            self.make_room(&mut shard, now);
        }
        let bucket = shard.entry(hash).or_insert(Bucket { tokens: cap, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(cap);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil();
        Err((wait as u32).max(1))
    }

    /// Drops the buckets that are full again; if none is, the least recently used one.
    fn make_room(&self, shard: &mut HashMap<u64, Bucket>, now: Instant) {
        let (rate, cap) = (self.per_second(), self.capacity());
        shard.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < cap);
        if shard.len() >= self.per_shard {
            if let Some(oldest) = shard.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
                shard.remove(&oldest);
            }
        }
    }

    /// Buckets held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limiters of a server.
pub struct RateLimiter {
    settings: RateLimits,
    token: Limiter,
    sign_in: Limiter,
}

impl RateLimiter {
    pub fn new(settings: RateLimits) -> Self {
        RateLimiter {
            settings,
            token: Limiter::new(settings.token, MAX_BUCKETS),
            sign_in: Limiter::new(settings.sign_in, MAX_BUCKETS),
        }
    }

    pub fn settings(&self) -> RateLimits {
        self.settings
    }

    /// Counts a request made with session token `token`.
    pub fn check_token(&self, token: &str) -> Result<(), ApiError> {
        self.token.take(token.as_bytes(), Instant::now()).map_err(limited)
    }

    /// Counts a sign-in request of `req`'s client.
    pub fn check_sign_in(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(ip) = self.client_ip(req) else { return Ok(()) };
        let key = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        self.sign_in.take(&key, Instant::now()).map_err(limited)
    }

    /// The client's address: the peer's, or with `trust_forwarded_for` the last valid `X-Forwarded-For` entry.
    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        if self.settings.trust_forwarded_for {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .last();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        req.peer_addr().map(|a| a.ip())
    }
}

fn limited(seconds: u32) -> ApiError {
    ApiError {
        retry_after: Some(seconds),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {seconds} s"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = Limiter::new(RateLimit { per_minute: 60, burst: 3 }, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(b"a", t0), Ok(()));
        }
        assert_eq!(l.take(b"a", t0), Err(1));
        assert_eq!(l.take(b"b", t0), Ok(()), "another key has its own bucket");
        assert_eq!(l.take(b"a", t0 + Duration::from_millis(500)), Err(1), "half a token is not a request");
        assert_eq!(l.take(b"a", t0 + Duration::from_secs(1)), Ok(()));
        // Slow rates ask for longer waits, in whole seconds.
        let slow = Limiter::new(RateLimit { per_minute: 6, burst: 1 }, 100);
        assert_eq!(slow.take(b"a", t0), Ok(()));
        assert_eq!(slow.take(b"a", t0), Err(10));
        assert_eq!(Limiter::new(RateLimit::OFF, 1).take(b"a", t0), Ok(()), "0 disables");
    }

    #[test]
    fn memory_stays_bounded() {
        let l = Limiter::new(RateLimit { per_minute: 60, burst: 2 }, SHARDS * 4);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let _ = l.take(&i.to_le_bytes(), t0);
        }
        assert!(l.len() <= SHARDS * 4, "{} buckets", l.len());
        for i in 0..10_000u32 {
            let _ = l.take(&i.to_be_bytes(), t0 + Duration::from_secs(5));
        }
        assert!(l.len() <= SHARDS * 4, "{} buckets", l.len());
    }
}
