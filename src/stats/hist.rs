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

/// The buckets a latency makes room for at its first value.
const FIRST_BUCKETS: usize = 8;

/// Values above this (one hour, in microseconds) are recorded as this and counted as clamped.
pub const MAX_US: u64 = 3_600_000_000;

/// The bucket layout every latency shares: HdrHistogram's, and the lowest value of each of its
/// buckets by index.
struct Layout {
    hist: Histogram<u64>,
    lows: Vec<u64>,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let hist = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid HdrHistogram bounds");
        let mut lows = Vec::new();
        let mut v = 0;
        while v <= MAX_US {
            lows.push(v);
            v = hist.next_non_equivalent(v);
        }
        Layout { hist, lows }
    })
}

/// The index of the bucket holding `us` (at most [`MAX_US`]) in HdrHistogram's layout for 1 µs
/// to an hour at 3 significant figures: 2,048 sub-buckets, each power of two above the first
/// adding 1,024 more. The unit tests check it against the crate's own buckets.
fn index_of(us: u64) -> u32 {
    const SUB_BUCKET_MASK: u64 = 2047;
    let bucket = 53 - (us | SUB_BUCKET_MASK).leading_zeros();
    let sub = (us >> bucket) as u32;
    ((bucket + 1) << 10) + sub - 1024
}

/// Counts per HdrHistogram bucket, by bucket index, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    buckets: Vec<(u32, u32)>,
}

impl Latency {
    /// Records `n` values of `us` microseconds; returns whether the value had to be clamped.
    pub fn record(&mut self, us: u64, n: u32) -> bool {
        let clamped = us > MAX_US;
        let i = index_of(us.min(MAX_US));
        match self.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(at) => self.buckets[at].1 = self.buckets[at].1.saturating_add(n),
            Err(at) => {
                if self.buckets.is_empty() {
                    // A minute of one route fills a few buckets: grow once, not 0 -> 4 -> 8.
                    self.buckets.reserve(FIRST_BUCKETS);
                }
                self.buckets.insert(at, (i, n))
            }
        }
        clamped
    }

    /// Adds every count of `other`, in place: the buckets `other` adds are counted first, then
    /// the two sorted lists are merged from their ends into the grown vector.
    pub fn merge(&mut self, other: &Latency) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        let mut added = 0;
        let mut mine = self.buckets.iter().peekable();
        for &(i, _) in &other.buckets {
            while mine.next_if(|b| b.0 < i).is_some() {}
            if mine.next_if(|b| b.0 == i).is_none() {
                added += 1;
            }
        }
        let (mut a, mut b) = (self.buckets.len(), other.buckets.len());
        self.buckets.resize(a + added, (0, 0));
        let mut to = self.buckets.len();
        while b > 0 {
            let theirs = other.buckets[b - 1];
            to -= 1;
            if a > 0 && self.buckets[a - 1].0 > theirs.0 {
                self.buckets[to] = self.buckets[a - 1];
                a -= 1;
            } else if a > 0 && self.buckets[a - 1].0 == theirs.0 {
                self.buckets[to] = (theirs.0, self.buckets[a - 1].1.saturating_add(theirs.1));
                a -= 1;
                b -= 1;
            } else {
                self.buckets[to] = theirs;
                b -= 1;
            }
        }
        debug_assert_eq!(to, a, "what is left of ours is already in place");
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The counts by bucket index, sorted.
    pub fn buckets(&self) -> &[(u32, u32)] {
        &self.buckets
    }

    /// The counts, to be replaced in place; the caller leaves them sorted by bucket index.
    pub(super) fn sorted_mut(&mut self) -> &mut Vec<(u32, u32)> {
        &mut self.buckets
    }

    /// A latency of these counts, sorted by bucket index.
    pub fn from_sorted(buckets: Vec<(u32, u32)>) -> Latency {
        debug_assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
        Latency { buckets }
    }
}

/// Quantiles over several latencies at once, without building a merged one: counts are added
/// into a dense scratch array by bucket index, a bitmap marks the buckets touched, and only
/// those are walked, in order, then cleared.
#[derive(Default)]
pub struct Quantiles {
    counts: Vec<u64>,
    touched: Vec<u64>,
}

impl Quantiles {
    /// The values (µs) at each of `qs` (ascending, each in 0..=1) over `parts`, as
    /// HdrHistogram's `value_at_quantile` gives them; `None` when the parts hold no value.
    pub fn compute<'a>(&mut self, parts: impl IntoIterator<Item = &'a Latency>, qs: &[f64]) -> Option<Vec<u64>> {
        self.compute_adding(parts, qs, None)
    }

    /// As [`Quantiles::compute`], also adding every count into `total`.
    pub fn compute_adding<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a Latency>,
        qs: &[f64],
        mut total_into: Option<&mut Dense>,
    ) -> Option<Vec<u64>> {
        let layout = layout();
        if self.counts.is_empty() {
            self.counts = vec![0; layout.lows.len()];
            self.touched = vec![0; layout.lows.len().div_ceil(64)];
        }
        let mut total = 0u64;
        // One pass over the parts' buckets (reading them is most of the cost).
        for p in parts {
            match total_into.as_deref_mut() {
                Some(d) => {
                    for &(i, n) in &p.buckets {
                        let (i, n) = (i as usize, u64::from(n));
                        self.counts[i] += n;
                        d.counts[i] += n;
                        self.touched[i / 64] |= 1 << (i % 64);
                        total += n;
                    }
                }
                None => {
                    for &(i, n) in &p.buckets {
                        let (i, n) = (i as usize, u64::from(n));
                        self.counts[i] += n;
                        self.touched[i / 64] |= 1 << (i % 64);
                        total += n;
                    }
                }
            }
        }
        if total == 0 {
            return None;
        }
        let mut walk = Walk::new(qs, total);
        // The bitmap is a few hundred words: scanning it all is cheaper than tracking its ends.
        for w in 0..self.touched.len() {
            let mut bits = std::mem::take(&mut self.touched[w]);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                walk.step(i, std::mem::take(&mut self.counts[i]));
            }
        }
        Some(walk.out)
    }
}

impl Quantiles {
    /// The sum of `parts` as one latency, added up in the dense scratch: one pass over every
    /// part, instead of a merge per part. One or two parts (a key or two of an hour's roll-up)
    /// are merged instead, faster than walking the whole scratch. Counts saturate as
    /// [`Latency::merge`]'s do.
    pub fn sum<'a>(&mut self, parts: impl IntoIterator<Item = &'a Latency>) -> Latency {
        let mut parts = parts.into_iter();
        let (first, second, third) = (parts.next(), parts.next(), parts.next());
        let parts = match (first, second, third) {
            (None, _, _) => return Latency::default(),
            (Some(a), None, _) => return a.clone(),
            (Some(a), Some(b), None) => {
                let mut l = a.clone();
                l.merge(b);
                return l;
            }
            (Some(a), Some(b), Some(c)) => [a, b, c].into_iter().chain(parts),
        };
        if self.counts.is_empty() {
            let n = layout().lows.len();
            self.counts = vec![0; n];
            self.touched = vec![0; n.div_ceil(64)];
        }
        for p in parts {
            for &(i, n) in &p.buckets {
                let i = i as usize;
                self.counts[i] += u64::from(n);
                self.touched[i / 64] |= 1 << (i % 64);
            }
        }
        let mut buckets = Vec::new();
        for w in 0..self.touched.len() {
            let mut bits = std::mem::take(&mut self.touched[w]);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let n = std::mem::take(&mut self.counts[i]);
                buckets.push((i as u32, n.min(u64::from(u32::MAX)) as u32));
            }
        }
        Latency { buckets }
    }
}

/// A latency as running totals: each bucket used, with the count of values in it and in every
/// bucket below. A quantile over two of them (a long range kept merged, and the few minutes at
/// its edges) is then a binary search and a short walk, not a pass over every bucket.
#[derive(Debug, Clone, Default)]
pub struct Cumulative {
    index: Vec<u32>,
    upto: Vec<u64>,
    /// Where some quantiles of this latency alone fall: the searches over it and a little
    /// more start there.
    hints: Vec<(f64, usize)>,
}

impl Cumulative {
    /// Not `set_sum` with nothing: collecting each column in one go is a third faster, and a
    /// span converts millions of buckets at once.
    pub fn of(l: &Latency) -> Self {
        let mut sum = 0u64;
        let upto = l
            .buckets
            .iter()
            .map(|&(_, n)| {
                sum += u64::from(n);
                sum
            })
            .collect();
        Self { index: l.buckets.iter().map(|b| b.0).collect(), upto, hints: Vec::new() }
    }

    /// Notes where each of `qs` falls, for the searches to start from.
    pub fn hinted(mut self, qs: &[f64]) -> Self {
        self.hints = qs.iter().map(|&q| (q, self.position(q))).collect();
        self
    }

    /// The position of the bucket of quantile `q` of this latency alone.
    fn position(&self, q: f64) -> usize {
        let want = rank(q, self.count());
        match self.hints.iter().find(|h| h.0 == q) {
            Some(&(_, at)) => at,
            None => self.upto.partition_point(|&c| c < want),
        }
    }

    pub fn count(&self) -> u64 {
        self.upto.last().copied().unwrap_or(0)
    }

    /// Becomes `a` and `b` added up, reusing its own memory.
    pub fn set_sum(&mut self, a: &Latency, b: &Latency) {
        let (a, b) = (&a.buckets[..], &b.buckets[..]);
        self.index.clear();
        self.upto.clear();
        self.index.reserve(a.len() + b.len());
        self.upto.reserve(a.len() + b.len());
        let (mut i, mut j, mut sum) = (0, 0, 0u64);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            let next = x.0.min(y.0);
            if x.0 == next {
                sum += u64::from(x.1);
                i += 1;
            }
            if y.0 == next {
                sum += u64::from(y.1);
                j += 1;
            }
            self.index.push(next);
            self.upto.push(sum);
        }
        for &(index, n) in a[i..].iter().chain(&b[j..]) {
            sum += u64::from(n);
            self.index.push(index);
            self.upto.push(sum);
        }
    }

    /// The values at each of `qs` (ascending, each in 0..=1) over `a` and `b` together, exactly
    /// as [`Quantiles::compute`] gives them over their parts.
    pub fn quantiles_of_both(a: &Cumulative, b: &Cumulative, qs: &[f64]) -> Option<Vec<u64>> {
        let total = a.count() + b.count();
        (total > 0)
            .then(|| qs.iter().map(|&q| value_at(q, Self::reaching(a, b, rank(q, total), a.position(q)))).collect())
    }

    /// The lowest bucket where the count of `a` and `b` together reaches `want` (at most their
    /// total). First the lowest bucket of `a` that reaches it with what `b` holds up to there,
    /// found by galloping from `hint`, where `a` alone reaches the same quantile: with `b`
    /// small the answer is close by. Then the lowest bucket of `b` that reaches it with all of
    /// `a` below that one; it only counts if it lies lower.
    fn reaching(a: &Cumulative, b: &Cumulative, want: u64, hint: usize) -> usize {
        let before = |x: &Cumulative, p: usize| if p == 0 { 0 } else { x.upto[p - 1] };
        let b_upto = |i: u32| before(b, b.index.partition_point(|&x| x <= i));
        let len = a.index.len();
        let short = |p: usize| p < len && a.upto[p] + b_upto(a.index[p]) < want;
        let hint = hint.min(len);
        // Bounds with `short(lo - 1)` (or `lo == 0`) and `!short(hi)`, then a binary search.
        let (mut lo, mut hi) = if short(hint) {
            let (mut lo, mut step) = (hint + 1, 1);
            loop {
                let p = (hint + step).min(len);
                if !short(p) {
                    break (lo, p);
                }
                lo = p + 1;
                step *= 2;
            }
        } else {
            let (mut hi, mut step) = (hint, 1);
            loop {
                if hi == 0 {
                    break (0, 0);
                }
                let p = hint.saturating_sub(step);
                if short(p) {
                    break (p + 1, hi);
                }
                hi = p;
                step *= 2;
            }
        };
        while lo < hi {
            let mid = (lo + hi) / 2;
            if short(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let below = before(a, lo);
        let q = b.upto.partition_point(|&c| below + c < want);
        match (a.index.get(lo), b.index.get(q)) {
            (Some(&x), Some(&y)) => x.min(y) as usize,
            (Some(&x), None) => x as usize,
            (None, Some(&y)) => y as usize,
            (None, None) => unreachable!("a rank above the total"),
        }
    }
}

/// The nearest rank of quantile `q` among `total` values (at least the first).
fn rank(q: f64, total: u64) -> u64 {
    ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1)
}

/// What a quantile reports for a bucket: the highest value equivalent to it, as HdrHistogram's
/// `value_at_quantile` does, except the lowest for quantile 0.
fn value_at(q: f64, index: usize) -> u64 {
    let layout = layout();
    let low = layout.lows[index];
    if q == 0.0 { low } else { layout.hist.highest_equivalent(low) }
}

/// Nearest-rank quantiles over counts visited in bucket order.
struct Walk {
    wants: std::iter::Peekable<std::vec::IntoIter<(f64, u64)>>,
    seen: u64,
    out: Vec<u64>,
}

impl Walk {
    fn new(qs: &[f64], total: u64) -> Self {
        let wants: Vec<(f64, u64)> = qs.iter().map(|&q| (q, rank(q, total))).collect();
        Self { wants: wants.into_iter().peekable(), seen: 0, out: Vec::with_capacity(qs.len()) }
    }

    fn step(&mut self, index: usize, count: u64) {
        self.seen += count;
        while let Some(&(q, want)) = self.wants.peek() {
            if self.seen < want {
                break;
            }
            self.out.push(value_at(q, index));
            self.wants.next();
        }
    }
}

/// Counts for every bucket: a whole range's latency (all routes together), built by several
/// threads and added up.
pub struct Dense {
    counts: Vec<u64>,
}

impl Default for Dense {
    fn default() -> Self {
        Self { counts: vec![0; layout().lows.len()] }
    }
}

impl Dense {
    pub fn add(&mut self, l: &Latency) {
        for &(i, n) in &l.buckets {
            self.counts[i as usize] += u64::from(n);
        }
    }

    pub fn merge(&mut self, other: &Dense) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The counts as a sparse latency (each saturating at `u32::MAX`, as merges do).
    pub fn latency(&self) -> Latency {
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| (i as u32, n.min(u64::from(u32::MAX)) as u32))
            .collect();
        Latency { buckets }
    }

    pub fn quantiles(&self, qs: &[f64]) -> Option<Vec<u64>> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let mut walk = Walk::new(qs, total);
        for (i, &n) in self.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            walk.step(i, n);
        }
        Some(walk.out)
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
            assert_eq!(Quantiles::default().compute([&merged], &qs), Some(want.clone()), "seed {seed}, merged");
            let mut whole = Latency::default();
            for v in &vals {
                whole.record(*v, 1);
            }
            assert_eq!(merged, whole, "seed {seed}: merging the parts counts what recording them all does");
            let mut twice = parts[3].clone();
            twice.merge(&parts[3]);
            assert!(twice.buckets().iter().zip(parts[3].buckets()).all(|(t, p)| t.0 == p.0 && t.1 == 2 * p.1));
            let mut dense = Dense::default();
            let mut half = Dense::default();
            for (i, p) in parts.iter().enumerate() {
                if i % 2 == 0 { dense.add(p) } else { half.add(p) }
            }
            dense.merge(&half);
            assert_eq!(dense.quantiles(&qs), Some(want.clone()), "seed {seed}, dense");
            // Split unevenly in two, as a kept range and its edge minutes are.
            for cut in [0, 1, 2, 3, 5, 6, 7] {
                let mut q = Quantiles::default();
                let (a, b) = (q.sum(&parts[..cut]), q.sum(&parts[cut..]));
                let both = Cumulative::quantiles_of_both(&Cumulative::of(&a), &Cumulative::of(&b), &qs);
                assert_eq!(both, Some(want.clone()), "seed {seed}, cumulative, cut {cut}");
            }
            // A long range and a few values at its edge; and the edge alone.
            for few in [1, 2, 5, 50, 2_000] {
                let (mut long, mut edge) = (Latency::default(), Latency::default());
                for (i, v) in vals.iter().enumerate() {
                    if i < vals.len() - few {
                        long.record(*v, 1)
                    } else {
                        edge.record(*v, 1)
                    };
                }
                let long = Cumulative::of(&long);
                let both = Cumulative::quantiles_of_both(&long, &Cumulative::of(&edge), &qs);
                assert_eq!(both, Some(want.clone()), "seed {seed}, {few} at the edge");
                let hinted = Cumulative::quantiles_of_both(&long.hinted(&qs), &Cumulative::of(&edge), &qs);
                assert_eq!(hinted, Some(want.clone()), "seed {seed}, {few} at the edge, hinted");
                let alone = Cumulative::quantiles_of_both(&Cumulative::default(), &Cumulative::of(&edge), &qs);
                assert_eq!(alone, Quantiles::default().compute([&edge], &qs), "seed {seed}, {few} alone");
            }
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
    fn bucket_indexes_follow_the_crate_layout() {
        let l = layout();
        for (i, &low) in l.lows.iter().enumerate() {
            assert_eq!(index_of(low) as usize, i, "bucket {i} starting at {low}");
            let high = l.hist.highest_equivalent(low).min(MAX_US);
            assert_eq!(index_of(high) as usize, i, "top of bucket {i}");
        }
        assert_eq!(Quantiles::default().compute([&Latency::default()], &[0.5]), None);
        let none = Cumulative::default();
        assert_eq!(Cumulative::quantiles_of_both(&none, &none, &[0.5]), None);
    }
}
