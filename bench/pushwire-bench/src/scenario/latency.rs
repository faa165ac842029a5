//! Latency histograms: sharded while subscribers record, merged into percentiles (and,
//! over the packet link, a CDF and the count of stalls over 1 s) when they are done.

use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::record::Latency;

/// Latency samples are recorded in microseconds up to this bound (larger saturate).
pub(super) const MAX_LATENCY_US: u64 = 120_000_000;
/// Histogram shards: subscribers record into `index % SHARDS`, so thousands of tasks
/// rarely meet on one lock.
pub(super) const SHARDS: usize = 32;

/// An empty histogram of microseconds, up to [`MAX_LATENCY_US`].
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The percentiles of a histogram of microseconds.
pub(crate) fn latency(histogram: &Histogram<u64>) -> Latency {
    Latency {
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        mean: histogram.mean(),
        over_1s: None,
        cdf: Vec::new(),
    }
}

/// A delivery later than this is a stall a person notices.
const STALL_US: u64 = 1_000_000;

/// [`latency`], with the count of stalls over 1 s and the CDF at every percent, p99.9
/// and the maximum: what the packet link's reports plot and count.
pub(crate) fn distribution(histogram: &Histogram<u64>) -> Latency {
    let mut latency = latency(histogram);
    latency.over_1s = Some(histogram.len().saturating_sub(histogram.count_between(0, STALL_US)));
    if !histogram.is_empty() {
        let quantiles = (1..=99).map(|percent| f64::from(percent) / 100.0).chain([0.999]);
        latency.cdf = quantiles.map(|q| (q, histogram.value_at_quantile(q))).collect();
        latency.cdf.push((1.0, histogram.max()));
    }
    latency
}

/// A histogram per shard, so subscribers on different threads seldom share a lock.
pub(super) fn shards() -> Vec<Mutex<Histogram<u64>>> {
    (0..SHARDS).map(|_| Mutex::new(histogram())).collect()
}

/// The shards' histograms as one.
pub(super) fn merged(shards: &[Mutex<Histogram<u64>>]) -> Histogram<u64> {
    let mut merged = histogram();
    for shard in shards {
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        merged.add(&*shard).expect("shards share the histogram bounds");
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_counts_stalls_and_ends_at_the_maximum() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap();
        for us in [10_000, 20_000, 900_000, 1_500_000, 4_000_000] {
            histogram.record(us).unwrap();
        }
        let latency = distribution(&histogram);
        assert_eq!(latency.over_1s, Some(2));
        assert_eq!(latency.cdf.len(), 101);
        assert_eq!(latency.cdf.last().map(|p| p.0), Some(1.0));
        assert!(latency.cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "rising: {:?}", latency.cdf);
        assert!(latency.cdf.last().unwrap().1 >= 3_990_000);
    }
}
