//! Rendezvous (highest-random-weight) assignment of the 1,024 shards over the live nodes: every node computes the
//! same answer from the same node list, with no coordinator, and a node joining or leaving moves only the shards it
//! wins or held.
//!
//! The score is part of the cluster's protocol: nodes of different builds in one cluster must agree on it, so a test
//! pins its values (changing it would make a mixed cluster hand shards back and forth until every node runs the new
//! build — safe, since leases decide ownership, but pointless churn).

use crate::runtime::{ShardId, SHARD_COUNT};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn node_seed(node_id: &str) -> u64 {
    node_id.as_bytes().iter().fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// SplitMix64's finaliser: a bijection whose every output bit depends on every input bit, so the seeds of two nodes
/// (which FNV leaves correlated for similar names) give independent-looking scores.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn score_seeded(seed: u64, shard: ShardId) -> u64 {
    mix(seed ^ mix(u64::from(shard.0).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The weight of `node_id` for `shard`: the live node with the highest weight is the shard's desired owner.
pub fn score(node_id: &str, shard: ShardId) -> u64 {
    score_seeded(node_seed(node_id), shard)
}

/// The desired owner of `shard` among `nodes` (highest score; equal scores, vanishingly rare, go to the smaller id so
/// every node still agrees). `None` when there are no nodes.
pub fn owner_of<S: AsRef<str>>(nodes: &[S], shard: ShardId) -> Option<&str> {
    nodes.iter().map(AsRef::as_ref).max_by(|a, b| score(a, shard).cmp(&score(b, shard)).then_with(|| b.cmp(a)))
}

/// The desired owner of every shard, as an index into `nodes` (`None` only when `nodes` is empty). One pass over
/// nodes × shards with each node's seed computed once: ~10 µs for three nodes, run once per lease tick.
pub fn assign<S: AsRef<str>>(nodes: &[S]) -> Vec<Option<usize>> {
    let seeds: Vec<u64> = nodes.iter().map(|n| node_seed(n.as_ref())).collect();
    (0..SHARD_COUNT)
        .map(|s| {
            let shard = ShardId(s);
            let mut best: Option<(u64, usize)> = None;
            for (i, &seed) in seeds.iter().enumerate() {
                let w = score_seeded(seed, shard);
                best = match best {
                    Some((bw, bi)) if bw > w || (bw == w && nodes[bi].as_ref() <= nodes[i].as_ref()) => Some((bw, bi)),
                    _ => Some((w, i)),
                };
            }
            best.map(|(_, i)| i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_pinned() {
        // Part of the protocol between nodes (see the module docs): these values must never change.
        assert_eq!(score("n1", ShardId(0)), 10_305_556_740_078_428_174);
        assert_eq!(score("n2", ShardId(7)), 8_803_455_662_040_998_659);
        assert_eq!(score("node-a", ShardId(1023)), 9_337_090_642_537_650_269);
        let nodes = ["n1", "n2", "n3"];
        let first: Vec<&str> = assign(&nodes)[..16].iter().map(|i| nodes[i.unwrap()]).collect();
        assert_eq!(
            first,
            ["n2", "n2", "n1", "n1", "n3", "n3", "n2", "n3", "n1", "n1", "n1", "n3", "n3", "n2", "n1", "n2"]
        );
    }

    fn counts(nodes: &[&str]) -> Vec<usize> {
        let mut counts = vec![0; nodes.len()];
        for owner in assign(nodes) {
            counts[owner.unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn assign_agrees_with_owner_of() {
        let nodes = ["n1", "n2", "n3", "zeta", "alpha-7"];
        for (s, owner) in assign(&nodes).into_iter().enumerate() {
            assert_eq!(owner.map(|i| nodes[i]), owner_of(&nodes, ShardId(s as u16)));
        }
        assert_eq!(assign::<&str>(&[]), vec![None; SHARD_COUNT as usize]);
        assert_eq!(owner_of::<&str>(&[], ShardId(3)), None);
    }

    #[test]
    fn the_order_of_the_node_list_does_not_matter() {
        assert_eq!(
            assign(&["n1", "n2", "n3"]).into_iter().map(|i| ["n1", "n2", "n3"][i.unwrap()]).collect::<Vec<_>>(),
            assign(&["n3", "n1", "n2"]).into_iter().map(|i| ["n3", "n1", "n2"][i.unwrap()]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn shards_spread_evenly() {
        let ten: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
        for nodes in [vec!["n1", "n2", "n3"], ten.iter().map(String::as_str).collect()] {
            let mean = f64::from(SHARD_COUNT) / nodes.len() as f64;
            for (node, n) in nodes.iter().zip(counts(&nodes)) {
                // Binomial spread: ~341 ± 15 for three nodes, ~102 ± 10 for ten; ±30 % only fails a biased score.
                assert!(
                    (n as f64) > mean * 0.7 && (n as f64) < mean * 1.3,
                    "{node} got {n} of {SHARD_COUNT} ({nodes:?})"
                );
            }
        }
    }

    #[test]
    fn a_joining_node_takes_shards_only_for_itself_and_a_leaving_node_gives_up_only_its_own() {
        let before = ["n1", "n2", "n3"];
        let after = ["n1", "n2", "n3", "n4"];
        let (a, b) = (assign(&before), assign(&after));
        let mut moved = 0;
        for s in 0..SHARD_COUNT as usize {
            let (was, now) = (before[a[s].unwrap()], after[b[s].unwrap()]);
            if was != now {
                assert_eq!(now, "n4", "shard {s} moved from {was} to {now}, not to the new node");
                moved += 1;
            }
        }
        // Read backwards, the same comparison says that n4 leaving hands each of its shards back to its previous
        // owner and moves nothing else.
        assert!(moved > 0, "the new node won nothing");
    }
}
