//! Placement: which of the cluster's fixed 1,024 shards an actor belongs to ([`shard_of`] its kind's
//! `Entity::placement_key`), and the [`Router`] that says whether this process serves a shard.
//!
//! A kind places a whole subtree of actors together by giving them one placement key (the domain uses the
//! organization for everything under it), so the actors that talk most land in one shard and one node. Single-node
//! mode has no router: every shard is local and nothing on the call path changes. Cluster mode (in progress) gives the
//! runtime a router backed by the shard leases; an activation of a key whose shard this node does not serve fails with
//! `ActivationFailure::NotOwner` instead of opening a file another node may be writing.

use std::fmt;

/// Shards in a cluster, fixed forever: a shard number is stored with leases and commits, so changing this (or
/// [`shard_of`]) would move every actor at once.
pub const SHARD_COUNT: u16 = 1024;

/// One of the [`SHARD_COUNT`] shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ShardId(pub u16);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The shard of a placement key: FNV-1a 64 of its bytes, finalised with the SplitMix64 mixer (FNV's low bits alone
/// spread poorly over a power of two), modulo [`SHARD_COUNT`]. Stable across builds, platforms and versions.
pub fn shard_of(placement_key: &str) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in placement_key.as_bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ShardId((h % u64::from(SHARD_COUNT)) as u16)
}

/// Where a shard's actors run, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This process serves the shard: activate here.
    Local,
    /// Another node serves it (or nobody does right now): this process must not open its actors.
    Remote,
}

/// Decides, per shard, whether this process may activate actors. Consulted only when an actor is activated, never
/// on calls to a live actor, so the hot path costs nothing; a node that loses a shard stops its live actors itself.
pub trait Router: Send + Sync + fmt::Debug + 'static {
    fn route(&self, shard: ShardId) -> Route;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_function_is_pinned() {
        // Stored with leases and commits: these values must never change.
        let pinned = [("acme", 1007), ("", 155), ("org-1", 659), ("user:7f3a", 117), ("app", 598)];
        for (key, shard) in pinned {
            assert_eq!(shard_of(key), ShardId(shard), "shard of {key:?}");
        }
    }

    #[test]
    fn keys_spread_evenly_over_the_shards() {
        let mut counts = vec![0u32; SHARD_COUNT as usize];
        let n = 200_000u32;
        for i in 0..n {
            counts[shard_of(&format!("org-{i}")).0 as usize] += 1;
        }
        let mean = f64::from(n) / f64::from(SHARD_COUNT);
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        // Binomial spread around 195 per shard: a sound hash stays well within ±35 %.
        assert!(f64::from(min) > mean * 0.65 && f64::from(max) < mean * 1.35, "min {min} max {max} mean {mean}");
    }
}
