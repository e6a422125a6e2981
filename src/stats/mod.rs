//! Latency and error statistics: per route, method, status and host, in one-minute buckets
//! (and one-hour roll-ups of them), merged on read into any range.
//!
//! The index thread records each event into a private pending set as it adds it to the index,
//! and publishes the set to the shared buckets when the commit that holds those events
//! succeeds: the statistics always describe exactly the committed events, one write lock per
//! commit and none per event.
//!
//! Nothing here is persisted separately. On start the buckets are rebuilt from the index's fast
//! fields (see `collect`), leaving out the lines the index is about to replay, so after any
//! crash they are the statistics of what the index holds: no event counted twice, none missed.

pub mod collect;
pub mod hist;
pub mod packed;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use rustc_hash::FxHashMap;

use crate::config::StatsConfig;
use crate::event::Event;
use crate::index::Catalog;
use crate::index::search::{Replay, SearchError, SearchRequest};
use hist::{Cumulative, Dense, Latency, Quantiles};

const MINUTE_MS: i64 = 60_000;
/// The route of requests that have none (no request line).
pub const NO_ROUTE: &str = "-";
/// At most one slow-request warning per this long; the rest are counted in the next one.
const SLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a bucket's series is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub route: String,
    pub method: String,
    /// The response status, 0 when the log has none.
    pub status: u16,
    pub host: String,
}

/// The thresholds applied when an event is recorded.
#[derive(Debug, Clone)]
pub struct Thresholds {
    slow_us: u64,
    slow_by_route: HashMap<String, u64>,
    apdex_us: u64,
}

impl Thresholds {
    pub fn new(cfg: &StatsConfig) -> Self {
        Self {
            slow_us: cfg.slow_request_ms * 1000,
            slow_by_route: cfg.slow_request_ms_by_route.iter().map(|(r, ms)| (r.clone(), ms * 1000)).collect(),
            apdex_us: cfg.apdex_target_ms * 1000,
        }
    }

    pub fn slow_us(&self, route: &str) -> u64 {
        if self.slow_by_route.is_empty() {
            return self.slow_us;
        }
        self.slow_by_route.get(route).copied().unwrap_or(self.slow_us)
    }

    pub fn default_slow_us(&self) -> u64 {
        self.slow_us
    }

    /// Routes with their own slow threshold (µs).
    pub fn slow_overrides(&self) -> impl Iterator<Item = (&str, u64)> {
        self.slow_by_route.iter().map(|(r, us)| (r.as_str(), *us))
    }

    pub fn apdex_us(&self) -> u64 {
        self.apdex_us
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::new(&StatsConfig::default())
    }
}

/// Milliseconds (as logged) to whole microseconds; negative or absurd values are not times.
pub fn micros(ms: f64) -> Option<u64> {
    // Adding a half and truncating rounds a non-negative number as `round` does (but for the
    // ulp below each half), without the library call `round` is on baseline x86-64.
    (ms.is_finite() && ms >= 0.0).then_some((ms * 1000.0 + 0.5) as u64)
}

/// The counts of one key over one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub count: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    /// Requests with a duration; the latency figures are over these.
    pub timed: u64,
    pub sum_us: u64,
    pub max_us: u64,
    pub slow: u64,
    pub satisfied: u64,
    pub tolerating: u64,
    /// Durations above an hour, recorded as an hour.
    pub clamped: u64,
    pub latency: Latency,
}

impl Series {
    /// Records one request; returns whether it was slow.
    pub fn record(&mut self, status: u16, duration_us: Option<u64>, slow_us: u64, apdex_us: u64) -> bool {
        self.count += 1;
        match status {
            500..=599 => self.server_errors += 1,
            400..=499 => self.client_errors += 1,
            _ => {}
        }
        let Some(us) = duration_us else { return false };
        self.timed += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
        if us <= apdex_us {
            self.satisfied += 1;
        } else if us <= apdex_us.saturating_mul(4) {
            self.tolerating += 1;
        }
        if self.latency.record(us, 1) {
            self.clamped += 1;
        }
        let slow = us > slow_us;
        if slow {
            self.slow += 1;
        }
        slow
    }

    pub fn merge(&mut self, o: &Series) {
        self.add_counts(o);
        self.latency.merge(&o.latency);
    }

    /// Adds everything of `o` but its latency histogram.
    fn add_counts(&mut self, o: &Series) {
        self.count += o.count;
        self.server_errors += o.server_errors;
        self.client_errors += o.client_errors;
        self.timed += o.timed;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.max_us = self.max_us.max(o.max_us);
        self.slow += o.slow;
        self.satisfied += o.satisfied;
        self.tolerating += o.tolerating;
        self.clamped += o.clamped;
    }
}

/// The figures of one group over a range, as the API returns them. Latency figures are `null`
/// when no request of the group carried a duration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub rps: f64,
    pub timed_count: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub error_rate: f64,
    pub client_error_rate: f64,
    pub server_errors: u64,
    pub client_errors: u64,
    pub slow_count: u64,
    pub slow_ratio: f64,
    pub apdex: Option<f64>,
    pub clamped: u64,
}

const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

impl Summary {
    /// Sums `parts` over a range of `seconds`.
    pub fn of(parts: &[&Series], seconds: f64, q: &mut Quantiles) -> Summary {
        let qs = q.compute(parts.iter().map(|p| &p.latency), &QUANTILES);
        Self::with_quantiles(parts, seconds, qs)
    }

    /// Sums `parts`, with the latency quantiles ([`QUANTILES`], in µs) already worked out.
    pub fn with_quantiles(parts: &[&Series], seconds: f64, qs: Option<Vec<u64>>) -> Summary {
        let mut s = Series::default();
        for p in parts {
            // The latency is summarised by the quantiles given.
            s.add_counts(p);
        }
        let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { round6(n as f64 / d as f64) };
        let ms = |us: u64| round6(us as f64 / 1000.0);
        // A bucket's highest value may lie above the largest request in it; never report a
        // percentile above the maximum.
        let at = |i: usize| qs.as_ref().map(|v| ms(v[i].min(s.max_us)));
        let timed = s.timed > 0;
        Summary {
            count: s.count,
            rps: if seconds > 0.0 { round6(s.count as f64 / seconds) } else { 0.0 },
            timed_count: s.timed,
            mean_ms: timed.then(|| round6(s.sum_us as f64 / s.timed as f64 / 1000.0)),
            p50_ms: at(0),
            p90_ms: at(1),
            p95_ms: at(2),
            p99_ms: at(3),
            p999_ms: at(4),
            max_ms: timed.then(|| ms(s.max_us)),
            error_rate: ratio(s.server_errors, s.count),
            client_error_rate: ratio(s.client_errors, s.count),
            server_errors: s.server_errors,
            client_errors: s.client_errors,
            slow_count: s.slow,
            slow_ratio: ratio(s.slow, s.timed),
            apdex: timed.then(|| round6((s.satisfied as f64 + s.tolerating as f64 / 2.0) / s.timed as f64)),
            clamped: s.clamped,
        }
    }
}

/// Six decimals are plenty and keep the JSON stable and readable.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// How groups are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    #[default]
    Route,
    Status,
    StatusClass,
    Method,
    Host,
    /// Only the total.
    None,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "" | "route" => GroupBy::Route,
            "status" => GroupBy::Status,
            "status_class" => GroupBy::StatusClass,
            "method" => GroupBy::Method,
            "host" => GroupBy::Host,
            "none" => GroupBy::None,
            _ => return None,
        })
    }

    fn label(self, k: &Key) -> String {
        match self {
            GroupBy::Route => k.route.clone(),
            GroupBy::Status => k.status.to_string(),
            GroupBy::StatusClass => status_class(k.status).to_string(),
            GroupBy::Method => k.method.clone(),
            GroupBy::Host => k.host.clone(),
            GroupBy::None => String::new(),
        }
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// Which keys a query keeps; every given part must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub route: Option<String>,
    pub method: Option<String>,
    /// A code (`503`) or a class (`5xx`).
    pub status: Option<String>,
    pub host: Option<String>,
}

impl Filter {
    fn keeps(&self, k: &Key) -> bool {
        self.route.as_ref().is_none_or(|r| *r == k.route)
            && self.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&k.method))
            && self.host.as_ref().is_none_or(|h| *h == k.host)
            && self.status.as_ref().is_none_or(|s| *s == k.status.to_string() || s == status_class(k.status))
    }
}

/// One group of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Groups (in no particular order) and their total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub groups: Vec<Group>,
    pub total: Summary,
}

/// Which group each key id falls in (`None` when the filter drops it): worked out once per
/// query over the distinct keys, so the series themselves are only indexed, never hashed.
struct Grouping {
    names: Vec<String>,
    of_key: Vec<Option<u32>>,
    selected: Vec<u32>,
}

impl Grouping {
    fn new(keys: &[Key], filter: &Filter, group_by: GroupBy) -> Self {
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut names = Vec::new();
        let mut selected = Vec::new();
        let of_key = keys
            .iter()
            .enumerate()
            .map(|(id, k)| {
                if !filter.keeps(k) {
                    return None;
                }
                selected.push(id as u32);
                let label = group_by.label(k);
                Some(*index.entry(label).or_insert_with_key(|l| {
                    names.push(l.clone());
                    names.len() as u32 - 1
                }))
            })
            .collect();
        Self { names, of_key, selected }
    }

    /// The selected key ids when the filter is narrow (one route, say): buckets are then
    /// looked up by them instead of scanned whole.
    fn only(&self) -> Option<&[u32]> {
        (self.selected.len() * 8 < self.of_key.len()).then_some(&self.selected[..])
    }

    /// The group of key `id`, if the filter keeps it.
    fn group_of(&self, id: u32) -> Option<usize> {
        self.of_key.get(id as usize).copied().flatten().map(|g| g as usize)
    }

    /// Adds up the series given by key id.
    fn report<'a>(self, series: impl Iterator<Item = (u32, &'a Series)>, group_by: GroupBy, seconds: f64) -> Report {
        let mut parts: Vec<Vec<&Series>> = vec![Vec::new(); self.names.len()];
        let mut all: Vec<&Series> = Vec::new();
        for (id, s) in series {
            if let Some(g) = self.group_of(id) {
                all.push(s);
                if group_by != GroupBy::None {
                    parts[g].push(s);
                }
            }
        }
        let work: Vec<(String, Vec<&Series>)> =
            self.names.into_iter().zip(parts).filter(|(_, p)| !p.is_empty()).collect();
        // Each thread summarises its share of the groups and adds their latencies into its own
        // dense total; the totals are merged at the end. The total of a query without groups
        // is the one group of everything.
        let summarise_all = |work: &[(String, Vec<&Series>)]| {
            let (mut q, mut dense) = (Quantiles::default(), Dense::default());
            let groups: Vec<Group> = work
                .iter()
                .map(|(key, p)| {
                    let qs = q.compute_adding(p.iter().map(|s| &s.latency), &QUANTILES, Some(&mut dense));
                    Group { key: key.clone(), summary: Summary::with_quantiles(p, seconds, qs) }
                })
                .collect();
            (groups, dense)
        };
        if group_by == GroupBy::None {
            return Report { groups: Vec::new(), total: Summary::of(&all, seconds, &mut Quantiles::default()) };
        }
        let mut total_latency = Dense::default();
        let mut groups = Vec::with_capacity(work.len());
        for (share, dense) in in_parallel(&work, summarise_all) {
            groups.extend(share);
            total_latency.merge(&dense);
        }
        Report { groups, total: Summary::with_quantiles(&all, seconds, total_latency.quantiles(&QUANTILES)) }
    }
}

/// Runs `work` over shares of `items` on up to four threads when there are many items (on
/// this one otherwise), and returns what it made of each share, in order.
fn in_parallel<T: Sync, W: Send>(items: &[T], work: impl Fn(&[T]) -> W + Sync) -> Vec<W> {
    // Asking for the parallelism reads cgroup files: once is enough.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4));
    if items.len() < 256 || threads < 2 {
        return vec![work(items)];
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items.chunks(chunk).map(|c| scope.spawn(move || work(c))).collect();
        handles.into_iter().map(|h| h.join().expect("statistics thread")).collect()
    })
}

/// Summarises `(key, series)` pairs over a range of `seconds`.
pub fn summarise<'a>(
    items: impl Iterator<Item = (&'a Key, &'a Series)>,
    filter: &Filter,
    group_by: GroupBy,
    seconds: f64,
) -> Report {
    let mut ids: HashMap<&Key, u32> = HashMap::new();
    let mut keys: Vec<Key> = Vec::new();
    let mut series: Vec<(u32, &Series)> = Vec::new();
    for (k, s) in items {
        let id = *ids.entry(k).or_insert_with(|| {
            keys.push(k.clone());
            keys.len() as u32 - 1
        });
        series.push((id, s));
    }
    Grouping::new(&keys, filter, group_by).report(series.into_iter(), group_by, seconds)
}

/// Series by key id. The ids are ours, so the cheap FxHash is safe here.
type Bucket = FxHashMap<u32, Series>;

/// One minute's or one hour's series: a map while events may still land in it, packed bytes
/// after (see [`packed`]); a late event unpacks it again.
enum Slot {
    Open(Bucket),
    Packed(Box<[u8]>),
}

impl Slot {
    /// Adds the series (with `only`, just those keys) to `read`.
    fn read<'a>(&'a self, only: Option<&[u32]>, read: &mut Read<'a>) {
        match self {
            Slot::Open(b) => each(b, only, |id, s| read.held.push((id, s))),
            Slot::Packed(bytes) => packed::unpack(bytes, only, &mut read.unpacked),
        }
    }

    /// The map, unpacked if it was packed.
    fn open(&mut self) -> &mut Bucket {
        if let Slot::Packed(bytes) = self {
            *self = Slot::Open(packed::unpack_all(bytes));
        }
        match self {
            Slot::Open(b) => b,
            Slot::Packed(_) => unreachable!("unpacked above"),
        }
    }

    fn pack(&mut self) {
        if let Slot::Open(b) = self {
            *self = Slot::Packed(packed::pack(b));
        }
    }
}

/// Minutes this far behind the newest are packed.
const OPEN_MINUTES: i64 = 120;
/// Hours this far behind the newest minute's hour are packed. An hour holds every key seen in
/// it with its whole latency histogram (98 buckets on average over ten days of 10 M generated
/// requests); packing the old ones took those statistics from 118 to 82 MB resident. "The
/// last 24 hours" still reads maps.
const OPEN_HOURS: i64 = 26;

/// The published buckets: minutes, and hours rolled up from them.
#[derive(Default)]
struct Buckets {
    keys: Vec<Key>,
    minutes: BTreeMap<i64, Slot>,
    /// The minutes and the hours not packed, and the newest minute written.
    open: BTreeSet<i64>,
    open_hours: BTreeSet<i64>,
    newest: i64,
    hours: BTreeMap<i64, Slot>,
    /// Counts the flushes; `written` holds, per hour, the flush that last wrote into it.
    version: u64,
    written: BTreeMap<i64, u64>,
}

/// A range of minutes as whole hours `[first, last)` and the minutes at either edge.
fn whole_hours(from: i64, to: i64) -> (i64, i64) {
    (from.div_euclid(60) + i64::from(from.rem_euclid(60) != 0), to.div_euclid(60))
}

/// Calls `f` with each series of `bucket` and its key id; with `only`, just those keys, looked
/// up rather than scanned for.
fn each<'a>(bucket: &'a Bucket, only: Option<&[u32]>, mut f: impl FnMut(u32, &'a Series)) {
    match only {
        Some(ids) => ids.iter().filter_map(|id| bucket.get(id).map(|s| (*id, s))).for_each(|(id, s)| f(id, s)),
        None => bucket.iter().for_each(|(id, s)| f(*id, s)),
    }
}

/// Series read from the buckets: references into those held as maps, and those decoded from
/// packed minutes, which the reader owns.
struct Read<'a> {
    held: Vec<(u32, &'a Series)>,
    unpacked: packed::Decoded,
}

/// Series whose decoding storage a thread keeps for its next read (a few MB at most).
const DECODED_KEPT: usize = 20_000;

thread_local! {
    static DECODED: std::cell::RefCell<packed::Decoded> = std::cell::RefCell::default();
}

impl Default for Read<'_> {
    fn default() -> Self {
        Read { held: Vec::new(), unpacked: DECODED.with_borrow_mut(std::mem::take) }
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if self.unpacked.capacity() <= DECODED_KEPT {
            self.unpacked.clear();
            DECODED.with_borrow_mut(|kept| *kept = std::mem::take(&mut self.unpacked));
        }
    }
}

impl<'a> Read<'a> {
    fn all(&self) -> impl Iterator<Item = (u32, &Series)> {
        self.held.iter().copied().chain(self.unpacked.as_slice().iter().map(|(id, s)| (*id, s)))
    }
}

impl Buckets {
    /// Adds the series of minutes `[lo, hi)` to `read`.
    fn read_minutes<'a>(&'a self, lo: i64, hi: i64, only: Option<&[u32]>, read: &mut Read<'a>) {
        self.minutes.range(lo..hi).for_each(|(_, m)| m.read(only, read));
    }

    /// The series of minutes `[from, to)` by key id: whole hours from the roll-ups, the edges
    /// by minute.
    fn between<'a>(&'a self, from: i64, to: i64, only: Option<&[u32]>) -> Read<'a> {
        let mut read = Read::default();
        let (first_hour, last_hour) = whole_hours(from, to);
        if first_hour < last_hour {
            self.read_minutes(from, first_hour * 60, only, &mut read);
            self.hours.range(first_hour..last_hour).for_each(|(_, h)| h.read(only, &mut read));
            self.read_minutes(last_hour * 60, to, only, &mut read);
        } else {
            self.read_minutes(from, to, only, &mut read);
        }
        read
    }

    /// The series of minutes `[from, to)`, within one hour: that hour's roll-up when the
    /// minutes start it and none after them holds anything (the current hour, up to now), so
    /// a dashboard's "last 24 hours" adds one bucket at that edge, not one per minute.
    fn edge(&self, from: i64, to: i64, only: Option<&[u32]>) -> Read<'_> {
        let hour = from.div_euclid(60);
        let end = (hour + 1) * 60;
        let mut read = Read::default();
        if from == hour * 60 && to <= end && self.minutes.range(to..end).next().is_none() {
            if let Some(h) = self.hours.get(&hour) {
                h.read(only, &mut read);
            }
        } else {
            self.read_minutes(from, to, only, &mut read);
        }
        read
    }

    /// The map of `minute`, unpacked if it was packed. Minutes ahead of the clock (`now`, in
    /// minutes) count as newest only up to [`OPEN_MINUTES`] ahead: one line from a skewed clock
    /// must not get the current minutes packed and unpacked at every flush.
    fn open_minute(&mut self, minute: i64, now: i64) -> &mut Bucket {
        self.newest = self.newest.max(minute.min(now + OPEN_MINUTES));
        self.open.insert(minute);
        self.minutes.entry(minute).or_insert_with(|| Slot::Open(Bucket::default())).open()
    }

    /// The map of `hour`, unpacked if it was packed.
    fn open_hour(&mut self, hour: i64) -> &mut Bucket {
        self.open_hours.insert(hour);
        self.hours.entry(hour).or_insert_with(|| Slot::Open(Bucket::default())).open()
    }

    /// Packs the open minutes [`OPEN_MINUTES`] behind the newest, and the open hours
    /// [`OPEN_HOURS`] behind its hour.
    fn pack_old(&mut self) {
        for (open, slots, before) in [
            (&mut self.open, &mut self.minutes, self.newest - OPEN_MINUTES),
            (&mut self.open_hours, &mut self.hours, self.newest.div_euclid(60) - OPEN_HOURS),
        ] {
            let old: Vec<i64> = open.range(..before).copied().collect();
            for at in old {
                open.remove(&at);
                if let Some(slot) = slots.get_mut(&at) {
                    slot.pack();
                }
            }
        }
    }

    /// The last flush that wrote into hours `[first, last)`: anything built from them since is
    /// current.
    fn stamp(&self, first: i64, last: i64) -> u64 {
        self.written.range(first..last).map(|(_, v)| *v).max().unwrap_or(0)
    }
}

/// Ranges with at least this many whole hours use (and keep) a [`Span`].
const SPAN_MIN_HOURS: i64 = 6;
/// Spans kept: "the last 24 hours" and a few other ranges a dashboard asks for.
const SPANS_KEPT: usize = 3;
/// Edges kept: the two of each span.
const EDGES_KEPT: usize = 2 * SPANS_KEPT;

/// What a query asks for, as the kept spans and edges tell queries apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    filter: Filter,
    group_by: GroupBy,
}

/// The series of some buckets added up per group of a query, and in total.
#[derive(Default)]
struct Merged {
    /// By group index; shorter than a later grouping that has seen new keys.
    groups: Vec<Series>,
    total: Series,
}

impl Merged {
    fn build<'a>(series: impl Iterator<Item = (u32, &'a Series)>, grouping: &Grouping) -> Merged {
        let mut parts: Vec<Vec<&Series>> = vec![Vec::new(); grouping.names.len()];
        for (id, s) in series {
            if let Some(g) = grouping.group_of(id) {
                parts[g].push(s);
            }
        }
        let shares = in_parallel(&parts, |share| {
            let (mut q, mut dense) = (Quantiles::default(), Dense::default());
            let groups = share
                .iter()
                .map(|p| {
                    let mut s = Series::default();
                    p.iter().for_each(|x| s.add_counts(x));
                    s.latency = q.sum(p.iter().map(|x| &x.latency));
                    dense.add(&s.latency);
                    s
                })
                .collect::<Vec<_>>();
            (groups, dense)
        });
        let (mut groups, mut dense) = (Vec::with_capacity(parts.len()), Dense::default());
        for (share, d) in shares {
            groups.extend(share);
            dense.merge(&d);
        }
        let mut total = Series::default();
        groups.iter().for_each(|g| total.add_counts(g));
        total.latency = dense.latency();
        Merged { groups, total }
    }
}

/// A group's counts over a span, with its latency as running totals.
struct Part {
    counts: Series,
    latency: Cumulative,
}

impl Part {
    fn of(mut s: Series) -> Part {
        let latency = Cumulative::of(&std::mem::take(&mut s.latency)).hinted(&QUANTILES);
        Part { counts: s, latency }
    }
}

/// The whole hours `[first, last)` of a range merged per group of one query shape, kept for
/// the next query of that shape over the same hours: "the last 24 hours" asked again (a
/// dashboard refreshing) then adds only the edge minutes to one part per group. Valid while no
/// flush writes into its hours.
struct Span {
    first: i64,
    last: i64,
    shape: Shape,
    stamp: u64,
    /// The keys known when it was built, and how they were grouped.
    keys: usize,
    grouping: Arc<Grouping>,
    groups: Vec<Part>,
    total: Part,
}

/// The minutes `[from, to)` at one edge of a span, merged per group of its query shape.
struct Edge {
    from: i64,
    to: i64,
    shape: Shape,
    stamp: u64,
    merged: Merged,
}

/// The kept item `same` picks, if `current`; else one built now and kept in its place, the
/// oldest going when there are `cap`.
fn kept<T>(
    cache: &Mutex<Vec<Arc<T>>>,
    cap: usize,
    same: impl Fn(&T) -> bool,
    current: impl Fn(&T) -> bool,
    build: impl FnOnce() -> T,
) -> Arc<T> {
    if let Some(t) = cache.lock().expect("statistics cache").iter().find(|t| same(t) && current(t)) {
        return t.clone();
    }
    let built = Arc::new(build());
    let mut cache = cache.lock().expect("statistics cache");
    cache.retain(|t| !same(t));
    if cache.len() >= cap {
        cache.remove(0);
    }
    cache.push(built.clone());
    built
}

/// The shared statistics the API reads.
#[derive(Default)]
pub struct Stats {
    buckets: RwLock<Buckets>,
    spans: Mutex<Vec<Arc<Span>>>,
    edges: Mutex<Vec<Arc<Edge>>>,
    /// Events whose route was folded into `other` by the cap, since the start.
    pub folded_routes: Arc<AtomicU64>,
    pub thresholds: Thresholds,
}

/// Fills the buckets from the index, leaving out the lines it is about to replay (they will be
/// recorded as they are added again). Returns how many requests were counted.
pub fn rebuild(catalog: &Catalog, skip: &[Replay], recorder: &mut Recorder) -> Result<u64, SearchError> {
    let collector = collect::SeriesCollector { thresholds: Arc::new(recorder.thresholds.clone()) };
    let mut requests = 0;
    // One partition at a time, so the collected series of only one day are held at once.
    catalog.collect(&SearchRequest::default(), skip, &collector, |fruit| {
        for (minute, key, series) in fruit {
            requests += series.count;
            recorder.absorb(minute, &key, &series);
        }
        // Published (and its old minutes packed) a partition at a time.
        recorder.flush();
    })?;
    Ok(requests)
}

/// A range of whole minutes, as the buckets answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl MinuteRange {
    /// `[from, to)` widened to whole minutes.
    pub fn covering(from_ms: i64, to_ms: i64) -> MinuteRange {
        let from = from_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let to = (to_ms + MINUTE_MS - 1).div_euclid(MINUTE_MS) * MINUTE_MS;
        MinuteRange { from_ms: from, to_ms: to.max(from + MINUTE_MS) }
    }

    pub fn seconds(&self) -> f64 {
        (self.to_ms - self.from_ms) as f64 / 1000.0
    }
}

impl Stats {
    pub fn new(thresholds: Thresholds) -> Self {
        Self { thresholds, ..Self::default() }
    }

    /// The report over a range of whole minutes.
    pub fn report(&self, range: MinuteRange, filter: &Filter, group_by: GroupBy) -> Report {
        let b = self.buckets.read().expect("stats lock");
        let (from, to) = (range.from_ms / MINUTE_MS, range.to_ms / MINUTE_MS);
        let (first, last) = whole_hours(from, to);
        if last - first >= SPAN_MIN_HOURS {
            let shape = Shape { filter: filter.clone(), group_by };
            return self.report_spanning(&b, from, to, shape, range.seconds());
        }
        let grouping = Grouping::new(&b.keys, filter, group_by);
        let read = b.between(from, to, grouping.only());
        grouping.report(read.all(), group_by, range.seconds())
    }

    /// The report over a long range: its whole hours from a kept [`Span`], its edge minutes
    /// from kept [`Edge`]s, put together per group. The edge at "now" changes with every
    /// flush and is merged again; the rest is merged once.
    fn report_spanning(&self, b: &Buckets, from: i64, to: i64, shape: Shape, seconds: f64) -> Report {
        let (first, last) = whole_hours(from, to);
        let stamp = b.stamp(first, last);
        let span = kept(
            &self.spans,
            SPANS_KEPT,
            |s| s.first == first && s.last == last && s.shape == shape,
            |s| s.stamp == stamp,
            || {
                let grouping = Grouping::new(&b.keys, &shape.filter, shape.group_by);
                let mut hours = Read::default();
                b.hours.range(first..last).for_each(|(_, h)| h.read(grouping.only(), &mut hours));
                let merged = Merged::build(hours.all(), &grouping);
                Span {
                    first,
                    last,
                    shape: shape.clone(),
                    stamp,
                    keys: b.keys.len(),
                    grouping: Arc::new(grouping),
                    groups: merged.groups.into_iter().map(Part::of).collect(),
                    total: Part::of(merged.total),
                }
            },
        );
        // Keys that came since fall in groups after the span's (labels are numbered in key
        // order), so the span's group numbers still hold.
        let grouping = match span.keys == b.keys.len() {
            true => span.grouping.clone(),
            false => Arc::new(Grouping::new(&b.keys, &shape.filter, shape.group_by)),
        };
        let lead = self.edge(b, from, first * 60, &shape, &grouping);
        let trail = self.edge(b, last * 60, to, &shape, &grouping);
        let nothing = Series::default();
        let put_together =
            |part: Option<&Part>, lead: Option<&Series>, trail: Option<&Series>, edges: &mut Cumulative| {
                let mut counts = Series::default();
                part.into_iter().for_each(|p| counts.add_counts(&p.counts));
                let (lead, trail) = (lead.unwrap_or(&nothing), trail.unwrap_or(&nothing));
                counts.add_counts(lead);
                counts.add_counts(trail);
                edges.set_sum(&lead.latency, &trail.latency);
                let span_latency = part.map(|p| &p.latency);
                let qs =
                    Cumulative::quantiles_of_both(span_latency.unwrap_or(&Cumulative::default()), edges, &QUANTILES);
                (counts.count > 0).then(|| Summary::with_quantiles(&[&counts], seconds, qs))
            };
        let numbered: Vec<(usize, &String)> = match shape.group_by {
            GroupBy::None => Vec::new(),
            _ => grouping.names.iter().enumerate().collect(),
        };
        // Groups are independent: shared out between threads when there are many.
        let groups = in_parallel(&numbered, |share| {
            let mut edges = Cumulative::default();
            share
                .iter()
                .filter_map(|&(g, name)| {
                    let (lead, trail) = (lead.merged.groups.get(g), trail.merged.groups.get(g));
                    let summary = put_together(span.groups.get(g), lead, trail, &mut edges)?;
                    Some(Group { key: name.clone(), summary })
                })
                .collect::<Vec<_>>()
        })
        .concat();
        let (lead, trail) = (Some(&lead.merged.total), Some(&trail.merged.total));
        let total = put_together(Some(&span.total), lead, trail, &mut Cumulative::default())
            .unwrap_or_else(|| Summary::with_quantiles(&[&nothing], seconds, None));
        Report { groups, total }
    }

    /// The minutes `[from, to)` merged per group of `shape`, kept or built.
    fn edge(&self, b: &Buckets, from: i64, to: i64, shape: &Shape, grouping: &Grouping) -> Arc<Edge> {
        let stamp = b.stamp(from.div_euclid(60), to.div_euclid(60) + 1);
        kept(
            &self.edges,
            EDGES_KEPT,
            |e| e.from == from && e.to == to && e.shape == *shape,
            |e| e.stamp == stamp,
            || Edge {
                from,
                to,
                shape: shape.clone(),
                stamp,
                merged: match from < to {
                    true => Merged::build(b.edge(from, to, grouping.only()).all(), grouping),
                    false => Merged::default(),
                },
            },
        )
    }

    /// Drops the kept spans and edges: the buckets under them were replaced or dropped.
    fn forget_merged(&self) {
        self.spans.lock().expect("statistics cache").clear();
        self.edges.lock().expect("statistics cache").clear();
    }

    /// The oldest and newest minute with data (ms), if any.
    pub fn extent(&self) -> Option<(i64, i64)> {
        let b = self.buckets.read().expect("stats lock");
        Some((*b.minutes.keys().next()? * MINUTE_MS, (*b.minutes.keys().next_back()? + 1) * MINUTE_MS))
    }

    /// Distinct keys and minute buckets held, for `/metrics`.
    pub fn size(&self) -> (usize, usize) {
        let b = self.buckets.read().expect("stats lock");
        (b.keys.len(), b.minutes.len())
    }
}

/// A report straight from the index over `req` (query and exact time range): for subsets the
/// buckets cannot answer, and for the CLI, which reads the index without the daemon.
pub fn report_from_index(
    catalog: &Catalog,
    req: &SearchRequest,
    thresholds: &Thresholds,
    filter: &Filter,
    group_by: GroupBy,
    seconds: f64,
) -> Result<Report, SearchError> {
    let collected = series_from_index(catalog, req, thresholds)?;
    Ok(summarise(collected.iter().map(|(_, k, s)| (k, s)), filter, group_by, seconds))
}

/// The per-minute series of the events matching `req`, from the index.
pub fn series_from_index(
    catalog: &Catalog,
    req: &SearchRequest,
    thresholds: &Thresholds,
) -> Result<collect::Collected, SearchError> {
    let collector = collect::SeriesCollector { thresholds: Arc::new(thresholds.clone()) };
    let mut all = Vec::new();
    catalog.collect(req, &[], &collector, |fruit| all.extend(fruit))?;
    Ok(all)
}

/// Rate-limits the slow-request warning.
struct SlowLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl SlowLog {
    fn note(&mut self, route: &str, us: u64, threshold_us: u64) {
        if self.last.is_some_and(|t| t.elapsed() < SLOW_LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            route,
            duration_ms = us as f64 / 1000.0,
            threshold_ms = threshold_us as f64 / 1000.0,
            more_slow_requests = self.suppressed,
            "slow request"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Slots of `Recorder::recent`.
const RECENT_KEYS: usize = 1024;

/// A key recently recorded, with its id and where its latest minute's pending series is.
struct Recent {
    key: Key,
    id: u32,
    /// The minute of the series at `at` in `Pending`, valid while `flushes` is its own.
    minute: i64,
    at: usize,
    flushes: u64,
}

/// The series recorded since the last flush, by minute and key id, in the order they were
/// first recorded; `at` finds them (numbers of our own: FxHash is safe).
#[derive(Default)]
struct Pending {
    series: Vec<((i64, u32), Series)>,
    at: FxHashMap<(i64, u32), usize>,
    /// Flushes so far: a `Recent` entry's position is good only within its flush.
    flushes: u64,
}

impl Pending {
    /// Where the series of key `id` in `minute` is, made empty when there is none.
    fn slot(&mut self, minute: i64, id: u32) -> usize {
        let series = &mut self.series;
        *self.at.entry((minute, id)).or_insert_with(|| {
            series.push(((minute, id), Series::default()));
            series.len() - 1
        })
    }

    /// Takes every series, in the order they were first recorded; positions given out before
    /// are void from then on.
    fn take(&mut self) -> std::vec::Drain<'_, ((i64, u32), Series)> {
        self.at.clear();
        self.flushes += 1;
        self.series.drain(..)
    }
}

/// `a == b`, without calling `memcmp` for two empty strings (a log without hosts gives every
/// key one): an empty `String` points at no memory, and glibc's AVX-512 `memcmp` reads it
/// with a masked load whose fault suppression took about 75 ns a call here.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// The writing side, owned by the index thread.
pub struct Recorder {
    stats: Arc<Stats>,
    thresholds: Thresholds,
    /// Key ids by the key's parts as bytes. Routes and hosts come from requests, so an
    /// attacker could pick them to collide: this map keeps the standard (keyed) hasher.
    ids: HashMap<Vec<u8>, u32>,
    /// Recent keys in a direct-mapped table by FxHash, in front of `ids` and `Pending::at`:
    /// most requests repeat a recent key in the same minute, and find both its id and its
    /// pending series here, without building the key's bytes or hashing twice. A collision
    /// here costs only a look in `ids`, so a chosen one gains an attacker nothing.
    recent: Vec<Option<Recent>>,
    new_keys: Vec<Key>,
    next_id: u32,
    pending: Pending,
    scratch: Vec<u8>,
    slow_log: SlowLog,
}

impl Recorder {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            thresholds: stats.thresholds.clone(),
            stats,
            ids: HashMap::new(),
            recent: Vec::new(),
            new_keys: Vec::new(),
            next_id: 0,
            pending: Pending::default(),
            scratch: Vec::new(),
            slow_log: SlowLog { last: None, suppressed: 0 },
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Moves what this recorder has published into `stats`, replacing its buckets whole, and
    /// records into `stats` from then on: statistics are rebuilt aside, then swapped in.
    pub fn move_into(&mut self, stats: Arc<Stats>) {
        let built = std::mem::take(&mut *self.stats.buckets.write().expect("stats lock"));
        *stats.buckets.write().expect("stats lock") = built;
        stats.forget_merged();
        self.stats = stats;
    }

    /// The id of the key of these parts, made when the key is new.
    fn id_of(&mut self, route: &str, method: &str, status: u16, host: &str) -> u32 {
        // The key's parts, joined by NULs.
        self.scratch.clear();
        self.scratch.extend_from_slice(route.as_bytes());
        self.scratch.push(0);
        self.scratch.extend_from_slice(method.as_bytes());
        self.scratch.push(0);
        let [low, high] = status.to_le_bytes();
        self.scratch.push(low);
        self.scratch.push(high);
        self.scratch.extend_from_slice(host.as_bytes());
        if let Some(id) = self.ids.get(self.scratch.as_slice()) {
            return *id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(self.scratch.clone(), id);
        self.new_keys.push(Key { route: route.into(), method: method.into(), status, host: host.into() });
        id
    }

    /// Records one event about to be indexed. Events with neither a route, a status nor a
    /// duration (unparsed lines, application logs) are not requests and are left out; a
    /// request without a request line (`"-"`, a timeout) has the route `-`.
    pub fn record(&mut self, ev: &Event) {
        if ev.route.is_none() && ev.status.is_none() && ev.duration_ms.is_none() {
            return;
        }
        let route = ev.route.as_deref().unwrap_or(NO_ROUTE);
        let (method, host) = (ev.method.as_deref().unwrap_or(""), ev.host.as_deref().unwrap_or(""));
        let status = ev.status.unwrap_or(0);
        let minute = ev.timestamp_ms.div_euclid(MINUTE_MS);
        let at = self.recent_series(route, method, status, host, minute);
        let us = ev.duration_ms.and_then(micros);
        let slow_us = self.thresholds.slow_us(route);
        if self.pending.series[at].1.record(status, us, slow_us, self.thresholds.apdex_us) {
            self.slow_log.note(route, us.unwrap_or(0), slow_us);
        }
    }

    /// Where in `pending` the series of this key and minute is: from the recent table when
    /// it holds them, else from `ids` and `Pending::at`, and then remembered there.
    fn recent_series(&mut self, route: &str, method: &str, status: u16, host: &str, minute: i64) -> usize {
        if self.recent.is_empty() {
            self.recent.resize_with(RECENT_KEYS, || None);
        }
        let mut h = rustc_hash::FxHasher::default();
        (route, method, status, host).hash(&mut h);
        let slot = h.finish() as usize % RECENT_KEYS;
        if let Some(r) = &mut self.recent[slot]
            && r.key.status == status
            && same(&r.key.route, route)
            && same(&r.key.method, method)
            && same(&r.key.host, host)
        {
            if r.minute != minute || r.flushes != self.pending.flushes {
                (r.minute, r.at, r.flushes) = (minute, self.pending.slot(minute, r.id), self.pending.flushes);
            }
            return r.at;
        }
        let id = self.id_of(route, method, status, host);
        let at = self.pending.slot(minute, id);
        let key = Key { route: route.into(), method: method.into(), status, host: host.into() };
        self.recent[slot] = Some(Recent { key, id, minute, at, flushes: self.pending.flushes });
        at
    }

    /// Adds a series computed elsewhere (the rebuild from the index).
    pub fn absorb(&mut self, minute: i64, key: &Key, series: &Series) {
        let id = self.id_of(&key.route, &key.method, key.status, &key.host);
        let at = self.pending.slot(minute, id);
        self.pending.series[at].1.merge(series);
    }

    /// Publishes what was recorded since the last flush: call after the commit that holds it.
    pub fn flush(&mut self) {
        if self.pending.series.is_empty() {
            return;
        }
        let mut b = self.stats.buckets.write().expect("stats lock");
        b.keys.append(&mut self.new_keys);
        b.version += 1;
        let version = b.version;
        let mut marked = None;
        let now = crate::index::now_ms().div_euclid(MINUTE_MS);
        for ((minute, id), s) in self.pending.take() {
            let hour = minute.div_euclid(60);
            // Pending series are nearly all of one hour: mark each hour once, not per series.
            if marked != Some(hour) {
                b.written.insert(hour, version);
                marked = Some(hour);
            }
            b.open_hour(hour).entry(id).or_default().merge(&s);
            match b.open_minute(minute, now).entry(id) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&s),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(s);
                }
            }
        }
        b.pack_old();
    }

    /// Drops the buckets before `cutoff_ms` (retention).
    pub fn drop_before(&mut self, cutoff_ms: i64) {
        let minute = cutoff_ms.div_euclid(MINUTE_MS);
        let mut b = self.stats.buckets.write().expect("stats lock");
        b.minutes = b.minutes.split_off(&minute);
        b.open = b.open.split_off(&minute);
        b.hours = b.hours.split_off(&minute.div_euclid(60));
        b.written = b.written.split_off(&minute.div_euclid(60));
        self.stats.forget_merged();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, route: &str, status: u16, ms: Option<f64>) -> Event {
        Event {
            timestamp_ms: ts,
            route: Some(route.into()),
            method: Some("GET".into()),
            status: Some(status),
            duration_ms: ms,
            ..Event::default()
        }
    }

    #[test]
    fn nothing_is_visible_before_the_flush_and_ranges_merge_hours_and_minutes() {
        let stats = Arc::new(Stats::default());
        let mut r = Recorder::new(stats.clone());
        let t0 = 1_764_000_000_000; // on the hour
        // One request a minute for three hours on /a, 2 s long every tenth minute and 500 on
        // every seventh.
        for m in 0..180 {
            let ms = if m % 10 == 0 { 2000.0 } else { 100.0 };
            let status = if m % 7 == 0 { 500 } else { 200 };
            r.record(&event(t0 + m * MINUTE_MS + 5, "/a", status, Some(ms)));
        }
        r.record(&event(t0, "/b", 404, None));
        let all = MinuteRange::covering(t0, t0 + 3 * 3_600_000);
        assert_eq!(stats.report(all, &Filter::default(), GroupBy::Route).total.count, 0);
        r.flush();
        let rep = stats.report(all, &Filter::default(), GroupBy::Route);
        assert_eq!(rep.total.count, 181);
        assert_eq!(rep.total.timed_count, 180);
        assert_eq!(rep.total.slow_count, 18);
        assert_eq!(rep.total.server_errors, 26);
        assert_eq!(rep.total.client_errors, 1);
        assert_eq!(rep.total.max_ms, Some(2000.0));
        assert_eq!(rep.groups.len(), 2);
        // A range that is not hour-aligned: minutes 30..150 use minute edges and hour 1.
        let part = MinuteRange::covering(t0 + 30 * MINUTE_MS, t0 + 150 * MINUTE_MS);
        let rep = stats.report(part, &Filter { route: Some("/a".into()), ..Filter::default() }, GroupBy::None);
        assert_eq!(rep.total.count, 120);
        assert_eq!(rep.total.slow_count, 12);
        assert_eq!(rep.total.rps, round6(120.0 / 7200.0));
        // HdrHistogram reports the top of the value's bucket: within 0.1 %, never below.
        let p50 = rep.total.p50_ms.expect("timed");
        assert!((100.0..100.1).contains(&p50), "{p50}");
        assert_eq!(rep.total.p95_ms, Some(2000.0), "capped at the maximum");
        assert!(rep.groups.is_empty());
        // Status filters take a code or a class.
        let f = Filter { status: Some("5xx".into()), ..Filter::default() };
        assert_eq!(stats.report(all, &f, GroupBy::Status).total.count, 26);
        r.drop_before(t0 + 3_600_000);
        assert_eq!(stats.report(all, &Filter::default(), GroupBy::None).total.count, 120);
    }

    /// More keys than the recent-key table has slots, recorded in turns, so slots are taken
    /// over again and again: every key keeps its own id and its own count.
    #[test]
    fn keys_beyond_the_recent_table_keep_their_counts() {
        let stats = Arc::new(Stats::default());
        let mut r = Recorder::new(stats.clone());
        let t0 = 1_764_000_000_000;
        let routes = 3 * RECENT_KEYS + 7;
        for round in 0..3 {
            for i in 0..routes {
                // Route i is requested (i % 3) + 1 times in all.
                if round <= i % 3 {
                    r.record(&event(t0 + round as i64, &format!("/r/{i}"), 200, Some(5.0)));
                }
            }
        }
        r.flush();
        let all = MinuteRange::covering(t0, t0 + MINUTE_MS);
        let rep = stats.report(all, &Filter::default(), GroupBy::Route);
        assert_eq!(rep.groups.len(), routes);
        for g in &rep.groups {
            let i: usize = g.key.trim_start_matches("/r/").parse().expect("a generated route");
            assert_eq!(g.summary.count, (i % 3) as u64 + 1, "{}", g.key);
        }
    }

    /// A key's recent entry remembers where its pending series is: a key going back and forth
    /// between minutes, recorded again after a flush, or differing only by an empty host, still
    /// counts in its own minute and key.
    #[test]
    fn a_key_counts_in_its_own_minute_across_minutes_and_flushes() {
        let stats = Arc::new(Stats::default());
        let mut r = Recorder::new(stats.clone());
        let t0 = 1_764_000_000_000; // on the hour
        let hosted = |ts, host: &str| Event { host: Some(host.into()), ..event(ts, "/a", 200, Some(5.0)) };
        for ts in [t0, t0 + MINUTE_MS, t0 + 5, t0 + MINUTE_MS + 5, t0 + 10] {
            r.record(&event(ts, "/a", 200, Some(5.0)));
        }
        r.record(&hosted(t0, "shop"));
        r.flush();
        r.record(&event(t0 + 20, "/a", 200, Some(5.0)));
        r.record(&hosted(t0 + MINUTE_MS, ""));
        r.flush();
        let minute = |m: i64| MinuteRange::covering(t0 + m * MINUTE_MS, t0 + (m + 1) * MINUTE_MS);
        let hosts = |m| {
            let rep = stats.report(minute(m), &Filter::default(), GroupBy::Host);
            rep.groups.iter().map(|g| (g.key.clone(), g.summary.count)).collect::<Vec<_>>()
        };
        assert_eq!(hosts(0), [(String::new(), 4), ("shop".to_string(), 1)]);
        assert_eq!(hosts(1), [(String::new(), 3)]);
    }

    /// The report of a long range through a kept span is exactly the report from the hourly
    /// buckets, also after late events land in one of its hours (which rebuilds the span).
    #[test]
    fn a_kept_span_answers_exactly_what_the_hours_do() {
        let stats = Arc::new(Stats::default());
        let mut r = Recorder::new(stats.clone());
        let t0 = 1_764_000_000_000; // on the hour
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut record = |r: &mut Recorder, from_min: i64, to_min: i64, n: usize| {
            for _ in 0..n {
                let v = next();
                let ts = t0 + (from_min + (v % (to_min - from_min) as u64) as i64) * MINUTE_MS;
                let route = format!("/r{}", v % 37);
                let status = if v % 11 == 0 { 503 } else { 200 };
                r.record(&event(ts, &route, status, Some((v >> 40) as f64 / 1e4)));
            }
            r.flush();
        };
        record(&mut r, 0, 30 * 60, 20_000);
        // The last 24 hours, not on the hour.
        let range = MinuteRange::covering(t0 + (5 * 60 + 17) * MINUTE_MS, t0 + (29 * 60 + 17) * MINUTE_MS);
        let from_hours = |stats: &Stats| {
            let b = stats.buckets.read().unwrap();
            let grouping = Grouping::new(&b.keys, &Filter::default(), GroupBy::Route);
            let read = b.between(range.from_ms / MINUTE_MS, range.to_ms / MINUTE_MS, None);
            grouping.report(read.all(), GroupBy::Route, range.seconds())
        };
        let sorted = |mut rep: Report| {
            rep.groups.sort_by(|a, b| a.key.cmp(&b.key));
            serde_json::to_string(&rep).unwrap()
        };
        let first = sorted(stats.report(range, &Filter::default(), GroupBy::Route));
        assert_eq!(stats.spans.lock().unwrap().len(), 1, "the span is kept");
        assert_eq!(first, sorted(from_hours(&stats)));
        assert_eq!(sorted(stats.report(range, &Filter::default(), GroupBy::Route)), first, "kept span, same answer");
        // New minutes of the current (partial) hour do not touch the span; late ones do.
        record(&mut r, 29 * 60, 29 * 60 + 10, 500);
        let stamp = stats.spans.lock().unwrap()[0].stamp;
        let now = sorted(stats.report(range, &Filter::default(), GroupBy::Route));
        assert_eq!(stats.spans.lock().unwrap()[0].stamp, stamp, "still the same span");
        assert_eq!(now, sorted(from_hours(&stats)));
        record(&mut r, 12 * 60, 13 * 60, 700);
        let late = sorted(stats.report(range, &Filter::default(), GroupBy::Route));
        assert_ne!(late, now, "late events count");
        assert_eq!(late, sorted(from_hours(&stats)));
        // A route first seen at the edge, after the span was built, is a group of its own.
        r.record(&event(t0 + (29 * 60 + 12) * MINUTE_MS, "/new", 200, Some(3.0)));
        r.flush();
        let with_new = stats.report(range, &Filter::default(), GroupBy::Route);
        assert!(with_new.groups.iter().any(|g| g.key == "/new" && g.summary.count == 1));
        assert_eq!(sorted(with_new.clone()), sorted(from_hours(&stats)));
        // The edge at "now" comes from its hour's roll-up, unless minutes after the range hold
        // something (clocks ahead, or a range that ends in the past).
        record(&mut r, 29 * 60 + 40, 29 * 60 + 50, 300);
        let ahead = stats.report(range, &Filter::default(), GroupBy::Route);
        assert_eq!(ahead.total.count, with_new.total.count, "minutes after the range are left out");
        assert_eq!(sorted(ahead), sorted(from_hours(&stats)));
        // Other groupings keep spans of their own, with the same answers as the hours.
        let b = stats.buckets.read().unwrap();
        let (from, to) = (range.from_ms / MINUTE_MS, range.to_ms / MINUTE_MS);
        for group_by in [GroupBy::Status, GroupBy::StatusClass, GroupBy::Method, GroupBy::None] {
            let g = Grouping::new(&b.keys, &Filter::default(), group_by);
            let expected = sorted(g.report(b.between(from, to, None).all(), group_by, range.seconds()));
            let shape = Shape { filter: Filter::default(), group_by };
            assert_eq!(sorted(stats.report_spanning(&b, from, to, shape, range.seconds())), expected, "{group_by:?}");
        }
        drop(b);
        // Filters go through the span too.
        let f = Filter { route: Some("/r3".into()), ..Filter::default() };
        let one = stats.report(range, &f, GroupBy::None).total;
        let b = stats.buckets.read().unwrap();
        let g = Grouping::new(&b.keys, &f, GroupBy::None);
        let expected = g.report(
            b.between(range.from_ms / MINUTE_MS, range.to_ms / MINUTE_MS, None).all(),
            GroupBy::None,
            range.seconds(),
        );
        assert_eq!(one, expected.total);
    }

    /// Records one request a minute on each of `routes` routes, from `t0` (an hour's start)
    /// over `minutes`, some failing, of varied durations; then flushes.
    fn record_minutes(r: &mut Recorder, t0: i64, routes: i64, minutes: std::ops::Range<i64>) {
        for m in minutes {
            for k in 0..routes {
                let status = if (m + k) % 7 == 0 { 502 } else { 200 };
                r.record(&event(t0 + m * MINUTE_MS + k, &format!("/r{k}"), status, Some((m * 37 % 900) as f64)));
            }
        }
        r.flush();
    }

    #[test]
    fn packed_minutes_answer_as_they_did_open_and_reopen_for_late_events() {
        let stats = Arc::new(Stats::default());
        let mut r = Recorder::new(stats.clone());
        let t0 = 1_764_000_000_000;
        let record = |r: &mut Recorder, minutes| record_minutes(r, t0, 5, minutes);
        record(&mut r, 0..60);
        let range = MinuteRange::covering(t0 + 10 * MINUTE_MS, t0 + 50 * MINUTE_MS);
        let open = stats.report(range, &Filter::default(), GroupBy::Route);
        let packed_count = |stats: &Stats| {
            let b = stats.buckets.read().unwrap();
            b.minutes.values().filter(|m| matches!(m, Slot::Packed(_))).count()
        };
        assert_eq!(packed_count(&stats), 0);
        record(&mut r, 60..300);
        assert_eq!(packed_count(&stats), 300 - OPEN_MINUTES as usize - 1);
        assert_eq!(stats.report(range, &Filter::default(), GroupBy::Route), open, "the same figures once packed");
        let one = Filter { route: Some("/r3".into()), ..Filter::default() };
        assert_eq!(stats.report(range, &one, GroupBy::None).total.count, 40);
        // A late event unpacks its minute; the next flush packs it again.
        record(&mut r, 20..21);
        assert_eq!(stats.report(range, &Filter::default(), GroupBy::Route).total.count, open.total.count + 5);
        assert_eq!(packed_count(&stats), 300 - OPEN_MINUTES as usize - 1);
        // A line from a clock ten days ahead does not get every minute of today packed.
        let now = crate::index::now_ms();
        r.record(&event(now, "/now", 200, Some(1.0)));
        r.record(&event(now + 10 * 86_400_000, "/future", 200, Some(1.0)));
        r.flush();
        let b = stats.buckets.read().unwrap();
        assert!(matches!(b.minutes.get(&now.div_euclid(MINUTE_MS)), Some(Slot::Open(_))));
        assert!(b.newest <= now.div_euclid(MINUTE_MS) + OPEN_MINUTES);
    }

    #[test]
    fn packed_hours_answer_as_they_did_and_reopen_for_late_events() {
        let t0 = 1_764_000_000_000; // on the hour
        let record = |r: &mut Recorder, minutes| record_minutes(r, t0, 3, minutes);
        let fed = |minutes| {
            let stats = Arc::new(Stats::default());
            let mut r = Recorder::new(stats.clone());
            record(&mut r, minutes);
            (stats, r)
        };
        let packed_hours = |stats: &Stats| {
            stats.buckets.read().unwrap().hours.values().filter(|h| matches!(h, Slot::Packed(_))).count()
        };
        // Twelve hours stay open; forty pack all but the last OPEN_HOURS and the newest.
        let (open, _) = fed(0..12 * 60);
        let (stats, mut r) = fed(0..40 * 60);
        assert_eq!(packed_hours(&open), 0);
        assert_eq!(packed_hours(&stats), 39 - OPEN_HOURS as usize);
        let hour = 60 * MINUTE_MS;
        // Ten hours with edge minutes (a kept span), and three whole hours (read directly).
        let long = MinuteRange::covering(t0 + 30 * MINUTE_MS, t0 + 10 * hour + 30 * MINUTE_MS);
        let short = MinuteRange::covering(t0 + 2 * hour, t0 + 5 * hour);
        for range in [long, short] {
            for group_by in [GroupBy::Route, GroupBy::None] {
                let want = open.report(range, &Filter::default(), group_by);
                assert!(want.total.count > 0);
                assert_eq!(stats.report(range, &Filter::default(), group_by), want, "{range:?} {group_by:?}");
            }
        }
        // A late event unpacks its hour; the same flush packs it again.
        record(&mut r, 150..151);
        let short_now = stats.report(short, &Filter::default(), GroupBy::None);
        assert_eq!(short_now.total.count, open.report(short, &Filter::default(), GroupBy::None).total.count + 3);
        assert_eq!(packed_hours(&stats), 39 - OPEN_HOURS as usize);
    }

    #[test]
    fn apdex_and_per_route_slow_thresholds() {
        let cfg = StatsConfig {
            apdex_target_ms: 100,
            slow_request_ms_by_route: [("/export".to_string(), 5000)].into(),
            ..StatsConfig::default()
        };
        let stats = Arc::new(Stats::new(Thresholds::new(&cfg)));
        let mut r = Recorder::new(stats.clone());
        for (route, ms) in [("/a", 50.0), ("/a", 300.0), ("/a", 1500.0), ("/export", 1500.0)] {
            r.record(&event(0, route, 200, Some(ms)));
        }
        r.flush();
        let rep = stats.report(MinuteRange::covering(0, 1), &Filter::default(), GroupBy::Route);
        let a = rep.groups.iter().find(|g| g.key == "/a").expect("/a");
        assert_eq!(a.summary.apdex, Some(0.5)); // (1 + 1/2) / 3
        assert_eq!(a.summary.slow_count, 1);
        let e = rep.groups.iter().find(|g| g.key == "/export").expect("/export");
        assert_eq!(e.summary.slow_count, 0);
    }
}
