//! One generator's share of a suite run across N (`--shard I/N`): the load
//! divided (users and arrival rates, the remainder spread over the first
//! shards), the user pool partitioned, its own random seed, a shared start
//! instant. The shards drive one system that is already running, so the
//! target must be a URL and the data seeded once beforehand.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::load::{Executor, LoadPlan};

/// Shard `index` of `count` (`0/4` … `3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not I/N (for example 0/4)"))?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| format!("shard index `{index}` is not a number"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("shard count `{count}` is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index runs from 0 to N-1"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How late after the agreed instant a shard's load may begin and still
/// be on time: the shard warns beyond it, and `perf merge
/// --start-tolerance` defaults to it.
pub const START_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(1);

/// A shard of a run: which, and when its load starts on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardPlan {
    pub shard: Shard,
    /// Milliseconds since the Unix epoch; `None`: at once.
    pub start_at_unix_ms: Option<u64>,
}

impl Shard {
    /// This shard's part of `total` whole things: an even share, and one
    /// more for each of the first `total % count` shards.
    pub fn share(&self, total: u32) -> u32 {
        total / self.count + u32::from(self.index < total % self.count)
    }

    /// This shard's part of a rate.
    pub fn share_rate(&self, rate: f64) -> f64 {
        rate / f64::from(self.count)
    }

    /// The shard that runs the probes (and owns what is done once).
    pub fn owns_probes(&self) -> bool {
        self.index == 0
    }

    /// The seed of this shard's virtual users, derived from the plan's:
    /// distinct per shard, the same for the same shard (SplitMix64's
    /// finaliser over the seed and the index). One shard of one keeps the
    /// plan's seed.
    pub fn seed(&self, seed: u64) -> u64 {
        if self.count == 1 {
            return seed;
        }
        let mut z = seed ^ u64::from(self.index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The load of one shard: users and rates divided; the pools of an
    /// open model divided rounding up, so each shard can hold its rate.
    pub fn split(&self, load: &mut LoadPlan) {
        match &mut load.executor {
            Executor::Users { stages } => {
                for stage in stages {
                    stage.from = self.share(stage.from);
                    stage.to = self.share(stage.to);
                }
            }
            Executor::Iterations { users, .. } => *users = self.share(*users),
            Executor::ArrivalRate {
                stages,
                pre_allocated_users,
                max_users,
            } => {
                for stage in stages {
                    stage.from = self.share_rate(stage.from);
                    stage.to = self.share_rate(stage.to);
                }
                *pre_allocated_users = pre_allocated_users.div_ceil(self.count).max(1);
                *max_users = max_users.div_ceil(self.count).max(1);
            }
            // A capacity search steers one generator's rate: planning
            // refuses to shard it.
            Executor::Steered { .. } => {}
        }
    }

    /// This shard's users of a pool: every `count`-th from its index, so
    /// that no two shards log in as the same user, when the pool has at
    /// least one user per shard; the whole pool otherwise (`false`).
    pub fn partition<T>(&self, pool: Vec<T>) -> (Vec<T>, bool) {
        if pool.len() < self.count as usize {
            return (pool, false);
        }
        let mine = pool
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i % self.count as usize == self.index as usize)
            .map(|(_, user)| user)
            .collect();
        (mine, true)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_shard_is_read_as_index_of_count() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for wrong in ["4/4", "1/0", "a/2", "3"] {
            assert!(wrong.parse::<Shard>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn seeds_differ_between_shards_and_one_shard_keeps_the_plan_seed() {
        let seeds: std::collections::BTreeSet<u64> = (0..8)
            .map(|index| Shard { index, count: 8 }.seed(42))
            .collect();
        assert_eq!(seeds.len(), 8);
        assert_eq!(Shard { index: 0, count: 1 }.seed(42), 42);
    }

    proptest! {
        #[test]
        fn the_shares_add_up_to_the_whole_and_differ_by_at_most_one(total in 0u32..10_000, count in 1u32..64) {
            let shares: Vec<u32> = (0..count).map(|index| Shard { index, count }.share(total)).collect();
            prop_assert_eq!(shares.iter().sum::<u32>(), total);
            prop_assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }

        #[test]
        fn a_pool_is_partitioned_without_overlap(size in 0usize..200, count in 1u32..16) {
            let pool: Vec<usize> = (0..size).collect();
            let mut seen = Vec::new();
            for index in 0..count {
                let (mine, partitioned) = Shard { index, count }.partition(pool.clone());
                prop_assert_eq!(partitioned, size >= count as usize);
                seen.extend(mine);
            }
            if size >= count as usize {
                seen.sort_unstable();
                prop_assert_eq!(seen, pool);
            }
        }
    }
}
