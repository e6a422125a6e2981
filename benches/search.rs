//! Search and statistics latency over a large index, and what the HTTP layers cost per request.
//!
//! Builds (once per schema, kept under `target/bench-search/<N>`) an index of N generated events over a
//! week, then times, 300 times each: a term query, a range query on the duration and a
//! full-text query, each over one hour; a full-text query over the whole week; a term query
//! through the full API router (token check, rate limit, security headers, limits, JSON); and
//! a 24-hour all-routes statistics query, on the statistics rebuilt from the index as a
//! restart builds them, asked again and moving a minute each time, and through the router. A
//! request to an unknown path, which passes every layer and does no work, gives the cost of the
//! layers.
//!
//! Run: `cargo bench --bench search` (10,000,000 events; the first run builds the index, a few
//! minutes), or `LOGWARDEN_BENCH_EVENTS=1000000 cargo bench --bench search`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use logwarden::api::{AppState, Auth, Limits, Role, router};
use logwarden::demo::TrafficGenerator;
use logwarden::event::{Event, Origin};
use logwarden::index::search::SearchRequest;
use logwarden::index::{Catalog, IndexStore};
use logwarden::metrics::IngestCounters;
use logwarden::parse::{FileParser, FormatSpec, Kind};
use logwarden::redact::{Redactor, Replacement};
use logwarden::stats::{Filter, GroupBy, MinuteRange, Recorder, Stats};
use tower::ServiceExt;

const T0: i64 = 1_764_000_000_000;

fn build(dir: &std::path::Path, events: u64) {
    // The marker holds the schema it was built with: an index of an older one is built again.
    let done = dir.join("complete");
    let schema = serde_json::to_string(&logwarden::index::schema::build().0).expect("schema");
    if std::fs::read_to_string(&done).is_ok_and(|built| built == schema) {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let started = Instant::now();
    let catalog = Catalog::open(dir).expect("catalog");
    let (mut store, _) = IndexStore::open(catalog, 256 << 20, 36500).expect("store");
    let mut g = TrafficGenerator::new(7);
    let mut parser = FileParser::new(FormatSpec::Fixed(Kind::Combined));
    let redactor = Redactor::new(&[], Replacement::Fixed);
    // A week: about 16 requests a second.
    let step = 7 * 86_400_000 / events as i64;
    let mut offset = 0u64;
    for i in 0..events {
        let line = g.line(T0 + i as i64 * step.max(1));
        let mut ev = Event::default();
        parser.parse(&line, &mut ev).expect("generated lines parse");
        let origin = Origin {
            fingerprint: "bench".into(),
            offset,
            end_offset: offset + line.len() as u64 + 1,
            path: "bench".into(),
        };
        offset = origin.end_offset;
        ev.id = origin.event_id();
        ev.raw = line;
        store.add(&origin, &redactor.redact(ev)).expect("add");
        if i % 1_000_000 == 999_999 {
            store.commit().expect("commit");
            eprintln!("  {} events indexed ({:.0} s)", i + 1, started.elapsed().as_secs_f64());
        }
    }
    store.close().expect("close");
    std::fs::write(&done, schema).expect("marker");
    println!("built an index of {events} events in {:.0} s", started.elapsed().as_secs_f64());
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.5), at(0.99))
}

/// Runs `f` `runs` times; the time of each, in ms.
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

#[global_allocator]
static ALLOCATOR: logwarden::Allocator = mimalloc::MiMalloc;

fn main() {
    logwarden::tune_allocator();
    if std::env::args().skip(1).any(|a| a == "--list" || (!a.starts_with("--") && a != "search")) {
        return;
    }
    let events: u64 = std::env::var("LOGWARDEN_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-search/{events}"));
    build(&dir, events);
    let catalog = Catalog::open(&dir).expect("open the index");
    let total =
        catalog.search(&SearchRequest { query: "*".into(), limit: 1, ..Default::default() }).expect("count").total;
    println!("index: {total} events, {} partitions", catalog.partitions().len());

    // Queries over one hour in the middle of the week, and one over all of it; newest first,
    // 100 hits.
    let from = T0 + 3 * 86_400_000 + 5 * 3_600_000;
    let runs = 300;
    let week = (T0, T0 + 7 * 86_400_000);
    for (query, (from, to)) in [
        ("status:503", (from, from + 3_600_000)),
        ("duration_ms:>1000", (from, from + 3_600_000)),
        ("shoes", (from, from + 3_600_000)),
        // Read through the raw line's phrase and the user-agent column.
        ("user_agent:\"Intel Mac\"", (from, from + 3_600_000)),
        ("passwd", week),
    ] {
        let req = SearchRequest {
            query: query.into(),
            from_ms: Some(from),
            to_ms: Some(to),
            limit: 100,
            ..Default::default()
        };
        let mut hits = 0;
        let (p50, p99) = percentiles(timed(runs, || hits = catalog.search(&req).expect("search").total));
        let hours = (to - from) / 3_600_000;
        println!("search {query:<24} {hours:>3} h of {total}: {hits:>7} matches   p50 {p50:.2} ms  p99 {p99:.2} ms");
    }

    // Statistics as a restart rebuilds them from the index; "the last 24 hours" of day 4.
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    let requests = logwarden::stats::rebuild(&catalog, &[], &mut Recorder::new(stats.clone())).expect("rebuild");
    println!("statistics rebuilt from the index: {requests} requests in {:.1} s", started.elapsed().as_secs_f64());
    let day = |k: i64| {
        let to = T0 + 4 * 86_400_000 + 17 * 60_000 + k * 60_000;
        MinuteRange::covering(to - 86_400_000, to)
    };
    let mut groups = 0;
    let again = timed(runs, || groups = stats.report(day(0), &Filter::default(), GroupBy::Route).groups.len());
    let (p50, p99) = percentiles(again);
    println!("stats 24 h, all {groups} routes, asked again           p50 {p50:.2} ms  p99 {p99:.2} ms");
    let mut k = 0;
    let moving = timed(runs, || {
        k += 1;
        stats.report(day(k), &Filter::default(), GroupBy::Route).groups.len()
    });
    let (p50, p99) = percentiles(moving);
    println!("stats 24 h, all routes, a minute later each time     p50 {p50:.2} ms  p99 {p99:.2} ms");

    // The same through the API router, with every layer.
    let token = "bench-token";
    let state = AppState::new(
        catalog.clone(),
        Arc::new(IngestCounters::default()),
        Auth::new(vec![("bench".into(), Role::Admin, token.into())]),
        u32::MAX,
    )
    .with_stats(stats.clone());
    let app = router(state, &Limits::default());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let get = |path: String| {
        Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty()).expect("request")
    };
    let mut via_api = Vec::with_capacity(runs);
    let mut stats_api = Vec::with_capacity(runs);
    let mut layers = Vec::with_capacity(runs * 10);
    rt.block_on(async {
        for i in 0..runs {
            // A different end each time (the hour plus i seconds), so the result cache never
            // answers.
            let path = format!(
                "/api/v1/search?q=status:503&from={}&to={}&limit=100",
                from / 1000,
                (from + 3_600_000) / 1000 + i as i64
            );
            let t = Instant::now();
            let resp = app.clone().oneshot(get(path)).await.expect("call");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["x-cache"], "miss");
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
            via_api.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (from, to) = (day(0).from_ms / 1000, day(0).to_ms / 1000);
        for _ in 0..runs {
            let t = Instant::now();
            let resp = app.clone().oneshot(get(format!("/api/v1/stats?from={from}&to={to}"))).await.expect("call");
            assert_eq!(resp.status(), 200);
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
            stats_api.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        for _ in 0..runs * 10 {
            let t = Instant::now();
            let resp = app.clone().oneshot(get("/no/such/endpoint".into())).await.expect("call");
            assert_eq!(resp.status(), 404);
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
            layers.push(t.elapsed().as_secs_f64() * 1_000_000.0);
        }
    });
    let (p50, p99) = percentiles(via_api);
    println!("same through the API router                         p50 {p50:.2} ms  p99 {p99:.2} ms");
    let (p50, p99) = percentiles(stats_api);
    println!("stats 24 h through the API router (asked again)      p50 {p50:.2} ms  p99 {p99:.2} ms");
    let (p50, p99) = percentiles(layers);
    println!(
        "the layers alone (auth, rate limit, headers, limits, 404 body)  p50 {p50:.1} µs  p99 {p99:.1} µs per request"
    );
}
