//! Causes read in a latency histogram's shape: a shared timeout (requests
//! piling up just below the slowest), two modes where one was expected.

use hdrhistogram::Histogram;

/// Requests piling up just below the slowest: a timeout they all hit.
pub fn shared_timeout(histogram: &Histogram<u64>) -> Option<String> {
    if histogram.len() < 5 {
        return None;
    }
    let max = histogram.max();
    let median = histogram.value_at_quantile(0.5).max(1);
    if max < median * 10 || max < 100_000 {
        return None;
    }
    // A timeout ends requests at one duration, give or take scheduling: a
    // spike in the last 3 % below the maximum, denser than the spread of
    // requests that merely waited a while (which a lock released early).
    let floor = max - max * 3 / 100;
    let clustered: u64 = histogram
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= floor)
        .map(|v| v.count_at_value())
        .sum();
    let below: u64 = histogram
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= max / 2 && v.value_iterated_to() < floor)
        .map(|v| v.count_at_value())
        .sum();
    let middle = below;
    (clustered >= 2 && middle <= clustered / 2).then(|| {
        format!(
            "{clustered} requests ended between {:.1}s and {:.1}s while the median was {:.1}ms — a shared timeout they all hit (lock_timeout, statement_timeout, a worker or proxy timeout)",
            floor as f64 / 1e6,
            max as f64 / 1e6,
            median as f64 / 1000.0
        )
    })
}

/// Two separate groups of latencies (a cache hit and a miss, say).
pub fn bimodal(histogram: &Histogram<u64>) -> Option<String> {
    let total = histogram.len();
    if total < 50 {
        return None;
    }
    // Latencies in buckets of a quarter of a power of two.
    let mut buckets = [0u64; 160];
    for v in histogram.iter_recorded() {
        let index = ((v.value_iterated_to().max(1) as f64).log2() * 4.0) as usize;
        buckets[index.min(buckets.len() - 1)] += v.count_at_value();
    }
    let peaks: Vec<usize> = (0..buckets.len())
        .filter(|&i| buckets[i] > 0)
        .filter(|&i| {
            (i == 0 || buckets[i] >= buckets[i - 1])
                && (i + 1 == buckets.len() || buckets[i] > buckets[i + 1])
        })
        .filter(|&i| buckets[i] * 10 >= total)
        .collect();
    for pair in peaks.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b - a < 8 {
            continue; // less than a fourfold difference
        }
        let valley = buckets[a..=b].iter().min().copied().unwrap_or(0);
        if valley * 5 <= buckets[a].min(buckets[b]) {
            let around = |i: usize| 2f64.powf(i as f64 / 4.0) / 1000.0;
            let share = |from: usize, to: usize| {
                buckets[from..to].iter().sum::<u64>() as f64 / total as f64 * 100.0
            };
            let split = (a + b) / 2;
            return Some(format!(
                "bimodal: one group near {:.1}ms ({:.0}%), another near {:.1}ms ({:.0}%) — two paths, such as a cache hit and a miss",
                around(a),
                share(0, split),
                around(b),
                share(split, buckets.len())
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    #[test]
    fn finds_a_shared_timeout() {
        let mut h = new_histogram();
        for i in 0..500 {
            h.record(20_000 + i * 10).unwrap();
        }
        for i in 0..6 {
            h.record(2_000_000 + i * 1000).unwrap();
        }
        let found = shared_timeout(&h).expect("a cluster at 2 s");
        assert!(
            found.starts_with("6 requests ended between 1.9s and 2.0s"),
            "{found}"
        );
        let mut spread = new_histogram();
        for i in 1..1000 {
            spread.record(i * 2000).unwrap();
        }
        assert_eq!(shared_timeout(&spread), None);
    }

    #[test]
    fn finds_two_modes_and_not_one() {
        let mut h = new_histogram();
        for i in 0..300 {
            h.record(2_000 + i).unwrap();
        }
        for i in 0..200 {
            h.record(80_000 + i * 10).unwrap();
        }
        let found = bimodal(&h).expect("two modes");
        assert!(
            found.contains("(60%)") && found.contains("(40%)"),
            "{found}"
        );
        let mut one = new_histogram();
        for i in 0..500 {
            one.record(10_000 + i * 7).unwrap();
        }
        assert_eq!(bimodal(&one), None);
    }
}
