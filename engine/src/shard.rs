//! Which shard owns an instance: a stable function of the instance ID and the shard count.
//!
//! `shard_of(id, shards) = jump(mix(fnv1a64(id bytes)), shards)`:
//! - [`fnv1a64`]: FNV-1a over the ID's UTF-8 bytes (offset basis 0xcbf29ce484222325, prime
//!   0x100000001b3), a hash every language has and no library version can change;
//! - `mix`: the splitmix64 finalizer, so IDs that differ in their last byte (`order-1`,
//!   `order-2`) spread over all 64 bits, not only the low ones;
//! - `jump`: Lamping and Veach's jump consistent hash, which moves only `1/n` of the keys
//!   when the count grows from `n - 1` to `n`.
//!
//! The function decides where an instance's state lives, so changing it loses instances
//! on every existing cluster; the test vectors below are written in docs/DESIGN.md too.

/// Most shards a cluster may have: each is a Raft group with its own tasks on every node.
pub const MAX_SHARDS: u32 = 256;

/// The shard (in `0..shards`) that owns `instance_id`. `shards` must be at least 1.
pub fn shard_of(instance_id: &str, shards: u32) -> u32 {
    debug_assert!(shards >= 1, "a cluster has at least one shard");
    jump(mix(fnv1a64(instance_id.as_bytes())), shards.max(1))
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The splitmix64 finalizer: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The node each shard's leadership is placed on, given the voters that are up:
/// rendezvous hashing with bounded load. Shard by shard in order, the voters are ranked by
/// `mix(shard << 32 ^ node)` (highest first) and the shard goes to the first one that holds
/// fewer than `ceil(shards / voters)` shards so far. Every node computes the same answer
/// from the same voters, each node leads `shards / voters` shards give or take one, and a
/// voter going down moves mostly its own shards. Empty when `voters` is.
pub fn preferred_leaders(shards: u32, voters: &[u64]) -> Vec<u64> {
    if voters.is_empty() {
        return Vec::new();
    }
    let cap = shards.div_ceil(voters.len() as u32);
    let mut load: std::collections::BTreeMap<u64, u32> = voters.iter().map(|v| (*v, 0)).collect();
    (0..shards)
        .map(|shard| {
            let mut ranked: Vec<u64> = load.keys().copied().collect();
            ranked.sort_by_key(|node| std::cmp::Reverse(mix((u64::from(shard) << 32) ^ node)));
            let chosen = ranked
                .into_iter()
                .find(|node| load[node] < cap)
                .expect("the caps add up to at least the shard count");
            *load.get_mut(&chosen).expect("a voter") += 1;
            chosen
        })
        .collect()
}

/// Jump consistent hash: a bucket in `0..buckets` for `key`.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets);
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    // b < buckets <= u32::MAX
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors docs/DESIGN.md lists: a change here is a change of the on-disk layout.
    #[test]
    fn the_placement_of_known_ids_never_changes() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let vectors: [(&str, u32, u32); 8] = [
            ("", 8, 5),
            ("a", 8, 1),
            ("order-1", 8, 7),
            ("order-2", 8, 7),
            ("b7e2c1a0-5f3d-4c1e-9a8b-0d2f6e4a1c3b", 8, 5),
            ("order-1", 1, 0),
            ("order-1", 3, 0),
            ("order-1", 256, 7),
        ];
        for (id, shards, expected) in vectors {
            assert_eq!(shard_of(id, shards), expected, "shard_of({id:?}, {shards})");
        }
    }

    #[test]
    fn one_hundred_thousand_ids_spread_evenly_over_eight_shards() {
        let mut counts = [0u32; 8];
        for i in 0..100_000 {
            counts[shard_of(&format!("instance-{i}"), 8) as usize] += 1;
        }
        let expected = 100_000 / 8;
        for (shard, count) in counts.iter().enumerate() {
            let off = (*count as f64 - expected as f64).abs() / expected as f64;
            assert!(
                off <= 0.05,
                "shard {shard} holds {count} of 100000 ({counts:?})"
            );
        }
    }

    #[test]
    fn growing_the_count_moves_only_the_keys_of_the_new_shard() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("wf-{i}")).collect();
        let mut moved = 0;
        for id in &ids {
            let (before, after) = (shard_of(id, 8), shard_of(id, 9));
            if before != after {
                assert_eq!(
                    after, 8,
                    "{id} moved from {before} to {after}, not to the new shard"
                );
                moved += 1;
            }
        }
        // About 1/9 of the keys move; all of them to shard 8.
        assert!((1_800..=2_650).contains(&moved), "{moved} of 20000 moved");
    }

    #[test]
    fn leaders_spread_over_the_voters_and_a_lost_voter_moves_only_its_share() {
        let all = preferred_leaders(8, &[1, 2, 3]);
        let count = |leaders: &[u64], node: u64| leaders.iter().filter(|l| **l == node).count();
        for node in [1, 2, 3] {
            assert!((2..=3).contains(&count(&all, node)), "{all:?}");
        }
        assert_eq!(all, preferred_leaders(8, &[1, 2, 3]), "deterministic");
        let without_3 = preferred_leaders(8, &[1, 2]);
        assert_eq!(
            (count(&without_3, 1), count(&without_3, 2)),
            (4, 4),
            "{without_3:?}"
        );
        let kept = all
            .iter()
            .zip(&without_3)
            .filter(|(before, after)| **before != 3 && before == after)
            .count();
        let not_on_3 = all.iter().filter(|l| **l != 3).count();
        assert!(kept + 1 >= not_on_3, "{all:?} -> {without_3:?}");
        assert_eq!(preferred_leaders(1, &[4, 9]).len(), 1);
        assert!(preferred_leaders(8, &[]).is_empty());
        for voters in [vec![1, 2, 3, 4, 5], vec![7], vec![10, 20, 30]] {
            let leaders = preferred_leaders(16, &voters);
            let cap = 16usize.div_ceil(voters.len());
            for node in &voters {
                assert!(count(&leaders, *node) <= cap, "{voters:?}: {leaders:?}");
            }
        }
    }

    #[test]
    fn every_id_lands_in_range() {
        for shards in [1, 2, 3, 7, 8, MAX_SHARDS] {
            for i in 0..2_000 {
                assert!(shard_of(&format!("x{i}"), shards) < shards);
            }
        }
    }
}
