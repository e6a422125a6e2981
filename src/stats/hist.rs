//! Latency histograms with HdrHistogram's buckets (3 significant figures, 1 µs to 1 hour),
//! stored sparsely.
//!
//! A dense HdrHistogram over that range holds about 23,000 counters (180 KiB); a route's minute
//! usually fills a few dozen of them, and there are thousands of route-minutes a day. So a
//! [`Latency`] keeps only the buckets it uses, each named by the lowest value HdrHistogram
//! assigns to it, sorted. The `hdrhistogram` crate decides the buckets (and so the precision);
//! quantiles follow its `value_at_quantile`: the highest value equivalent to the bucket where
//! the cumulative count first reaches `ceil(q * count)`.

use std::sync::OnceLock;

use hdrhistogram::Histogram;

/// Values above this (one hour, in microseconds) are recorded as this and counted as clamped.
pub const MAX_US: u64 = 3_600_000_000;

/// The bucket layout every latency shares.
fn layout() -> &'static Histogram<u64> {
    static LAYOUT: OnceLock<Histogram<u64>> = OnceLock::new();
    LAYOUT.get_or_init(|| Histogram::new_with_bounds(1, MAX_US, 3).expect("valid HdrHistogram bounds"))
}

/// Counts per HdrHistogram bucket, keyed by the bucket's lowest value and sorted by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    buckets: Vec<(u32, u32)>,
}

impl Latency {
    /// Records `n` values of `us` microseconds; returns whether the value had to be clamped.
    pub fn record(&mut self, us: u64, n: u32) -> bool {
        let clamped = us > MAX_US;
        let low = layout().lowest_equivalent(us.min(MAX_US)) as u32;
        match self.buckets.binary_search_by_key(&low, |b| b.0) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(n),
            Err(i) => self.buckets.insert(i, (low, n)),
        }
        clamped
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Latency) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        let mut out = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (self.buckets.iter().peekable(), other.buckets.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => out.push(*a.next().expect("peeked")),
                (Some(_), Some(_)) | (None, Some(_)) => out.push(*b.next().expect("peeked")),
                (Some(_), None) => out.push(*a.next().expect("peeked")),
                (None, None) => break,
            }
        }
        self.buckets = out;
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The (bucket, count) pairs, for persistence and tests.
    pub fn buckets(&self) -> &[(u32, u32)] {
        &self.buckets
    }

    /// Rebuilds a latency from pairs written by [`Latency::buckets`].
    pub fn from_buckets(mut buckets: Vec<(u32, u32)>) -> Latency {
        buckets.sort_unstable_by_key(|b| b.0);
        let mut out = Latency::default();
        for (low, n) in buckets {
            match out.buckets.last_mut() {
                Some(last) if last.0 == low => last.1 = last.1.saturating_add(n),
                _ => out.buckets.push((low, n)),
            }
        }
        out
    }
}

/// Quantiles over several latencies at once, without building a merged one: all pairs are
/// gathered into one scratch vector, sorted, and walked once.
#[derive(Default)]
pub struct Quantiles {
    scratch: Vec<(u32, u32)>,
}

impl Quantiles {
    /// The values (µs) at each of `qs` (ascending, each in 0..=1) over `parts`; `None` when the
    /// parts hold no value.
    pub fn compute<'a>(&mut self, parts: impl IntoIterator<Item = &'a Latency>, qs: &[f64]) -> Option<Vec<u64>> {
        self.scratch.clear();
        for p in parts {
            self.scratch.extend_from_slice(&p.buckets);
        }
        if self.scratch.is_empty() {
            return None;
        }
        self.scratch.sort_unstable_by_key(|b| b.0);
        let total: u64 = self.scratch.iter().map(|b| u64::from(b.1)).sum();
        let layout = layout();
        let mut out = Vec::with_capacity(qs.len());
        let mut seen = 0u64;
        let mut i = 0;
        for &q in qs {
            let want = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
            while seen < want && i < self.scratch.len() {
                seen += u64::from(self.scratch[i].1);
                i += 1;
            }
            let low = u64::from(self.scratch[i.saturating_sub(1)].0);
            out.push(if q == 0.0 { low } else { layout.highest_equivalent(low) });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the test needs no extra crate.
    fn values(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Log-uniform from 1 µs to about 70 s, like request times.
                let exp = (x % 26) as u32;
                (1u64 << exp) + (x >> 40) % (1u64 << exp)
            })
            .collect()
    }

    #[test]
    fn quantiles_equal_hdrhistogram_over_split_and_merged_parts() {
        let qs = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];
        for seed in [1, 7, 42] {
            let vals = values(20_000, seed);
            let mut reference = Histogram::<u64>::new_with_bounds(1, MAX_US, 3).expect("histogram");
            let mut parts = vec![Latency::default(); 7];
            for (i, v) in vals.iter().enumerate() {
                reference.record(*v).expect("in range");
                parts[i % 7].record(*v, 1);
            }
            let want: Vec<u64> = qs.iter().map(|q| reference.value_at_quantile(*q)).collect();
            assert_eq!(Quantiles::default().compute(&parts, &qs), Some(want.clone()), "seed {seed}");
            let mut merged = Latency::default();
            for p in &parts {
                merged.merge(p);
            }
            assert_eq!(Quantiles::default().compute([&merged], &qs), Some(want), "seed {seed}, merged");
        }
    }

    #[test]
    fn values_beyond_an_hour_are_clamped_and_reported() {
        let mut l = Latency::default();
        assert!(!l.record(MAX_US, 1));
        assert!(l.record(MAX_US * 5, 1));
        let top = Quantiles::default().compute([&l], &[1.0]).expect("values")[0];
        assert!((MAX_US..MAX_US + MAX_US / 1000).contains(&top), "{top}");
    }

    #[test]
    fn buckets_round_trip_and_empty_has_no_quantiles() {
        let mut l = Latency::default();
        for v in [5, 5, 1_000_000, 3, 70_000] {
            l.record(v, 1);
        }
        assert_eq!(Latency::from_buckets(l.buckets().to_vec()), l);
        assert_eq!(Quantiles::default().compute([&Latency::default()], &[0.5]), None);
    }
}
