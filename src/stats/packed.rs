//! Minute buckets packed into bytes once no new events are expected in them.
//!
//! A week of minutes is most of what the statistics hold: ten thousand minutes, each with a
//! series for every key seen in it. As maps of series they cost about 400 bytes per series
//! (the series, its histogram's own allocation and the map's slack); packed as variable-length
//! integers, sorted by key and with deltas for keys and buckets, about 30. Reading a packed
//! minute decodes it, which only ranges with minute edges and charts by the minute do.

use super::{Bucket, Series};

/// `bucket` as bytes, series in key order.
pub fn pack(bucket: &Bucket) -> Box<[u8]> {
    let mut ids: Vec<u32> = bucket.keys().copied().collect();
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ids.len() * 32);
    let mut previous = 0;
    for id in ids {
        let s = &bucket[&id];
        put(&mut out, u64::from(id - previous));
        previous = id;
        for n in [
            s.count,
            s.server_errors,
            s.client_errors,
            s.timed,
            s.sum_us,
            s.max_us,
            s.slow,
            s.satisfied,
            s.tolerating,
            s.clamped,
        ] {
            put(&mut out, n);
        }
        let buckets = s.latency.buckets();
        put(&mut out, buckets.len() as u64);
        let mut previous = 0;
        for &(index, n) in buckets {
            put(&mut out, u64::from(index - previous));
            put(&mut out, u64::from(n));
            previous = index;
        }
    }
    out.into_boxed_slice()
}

/// Series decoded from packed minutes. Their storage is kept for the next decoding: a query
/// whose range starts or ends within an hour decodes the same minutes again and again, and
/// allocating every series' buckets afresh each time was most of its cost.
#[derive(Debug, Default)]
pub struct Decoded {
    series: Vec<(u32, Series)>,
    len: usize,
}

impl Decoded {
    /// The series decoded since the last [`Decoded::clear`].
    pub fn as_slice(&self) -> &[(u32, Series)] {
        &self.series[..self.len]
    }

    /// Forgets the series, keeping their storage.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// How many series' storage is kept.
    pub fn capacity(&self) -> usize {
        self.series.len()
    }

    fn next_slot(&mut self) -> &mut (u32, Series) {
        if self.len == self.series.len() {
            self.series.push(Default::default());
        }
        self.len += 1;
        &mut self.series[self.len - 1]
    }
}

/// Decodes the series of `bytes` into `out`: all of them, or with `only` (sorted), just those
/// keys.
pub fn unpack(bytes: &[u8], only: Option<&[u32]>, out: &mut Decoded) {
    let mut at = 0;
    let mut id = 0u32;
    while at < bytes.len() {
        id += take(bytes, &mut at) as u32;
        let mut n = [0u64; 10];
        for v in &mut n {
            *v = take(bytes, &mut at);
        }
        let len = take(bytes, &mut at) as usize;
        if only.is_some_and(|ids| ids.binary_search(&id).is_err()) {
            for _ in 0..2 * len {
                take(bytes, &mut at);
            }
            continue;
        }
        let (slot_id, series) = out.next_slot();
        *slot_id = id;
        let [count, server_errors, client_errors, timed, sum_us, max_us, slow, satisfied, tolerating, clamped] = n;
        let buckets = series.latency.sorted_mut();
        buckets.clear();
        let mut index = 0u32;
        for _ in 0..len {
            index += take(bytes, &mut at) as u32;
            buckets.push((index, take(bytes, &mut at) as u32));
        }
        let latency = std::mem::take(&mut series.latency);
        *series = Series {
            count,
            server_errors,
            client_errors,
            timed,
            sum_us,
            max_us,
            slow,
            satisfied,
            tolerating,
            clamped,
            latency,
        };
    }
}

/// `bytes` as a bucket again, to write into.
pub fn unpack_all(bytes: &[u8]) -> Bucket {
    let mut out = Decoded::default();
    unpack(bytes, None, &mut out);
    out.series.into_iter().take(out.len).collect()
}

/// Appends `v` as a LEB128 variable-length integer.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 integer at `*at` and moves past it. The bytes are only ever ours.
fn take(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_minutes_unpack_to_the_same_series() {
        let mut bucket = Bucket::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..500u32 {
            let id = i * 7 % 613;
            let s: &mut Series = bucket.entry(id).or_default();
            for _ in 0..(i % 9) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let us = (x >> 20) % (1 << (x % 34));
                s.record(
                    if x.is_multiple_of(5) { 503 } else { 200 },
                    (!x.is_multiple_of(3)).then_some(us),
                    1_000_000,
                    100_000,
                );
            }
        }
        // Extremes: an empty series, and counts and sums at the top of their range.
        bucket.insert(u32::MAX, Series { sum_us: u64::MAX, max_us: u64::MAX, ..Series::default() });
        let packed = pack(&bucket);
        assert!(packed.len() < bucket.len() * 60, "{} bytes for {} series", packed.len(), bucket.len());
        assert_eq!(unpack_all(&packed), bucket);
        let only = [0, 14, 21, 999, u32::MAX];
        let mut some = Decoded::default();
        // Decoding again into storage that held other series leaves nothing of them behind.
        unpack(&packed, None, &mut some);
        some.clear();
        unpack(&packed, Some(&only), &mut some);
        let ids: Vec<u32> = some.as_slice().iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![0, 14, 21, u32::MAX]);
        assert!(some.as_slice().iter().all(|(id, s)| bucket[id] == *s));
        assert_eq!(some.capacity(), bucket.len(), "storage is reused");
    }
}
