//! Criterion micro-benchmarks, one per stage: each parser, redaction, rule matching, index
//! writing, and statistics (recording, and a day's query over 2,000 routes).
//! Run: `cargo bench --bench stages`.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logwarden::demo::TrafficGenerator;
use logwarden::event::{Event, Origin};
use logwarden::index::{Catalog, IndexStore};
use logwarden::parse::{FileParser, FormatSpec, Kind};
use logwarden::redact::{Redactor, Replacement};

const LINES: &[(&str, &str)] = &[
    (
        "combined",
        r#"198.51.100.23 - - [17/May/2015:10:05:03 +0000] "GET /docs/getting-started/images/search-screen.png HTTP/1.1" 200 203023 "https://docs.example.org/getting-started/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36" 0.123"#,
    ),
    (
        "json",
        r#"{"level":30,"time":1700000000123,"pid":1,"hostname":"web-1","req":{"id":7,"method":"POST","url":"/api/users/42?x=1","headers":{"user-agent":"curl/8"},"remoteAddress":"10.0.0.9"},"res":{"statusCode":201},"responseTime":12.5,"msg":"request completed"}"#,
    ),
    (
        "logfmt",
        r#"at=info method=GET path="/api/items/9?q=a" host=example.com request_id=abc fwd="1.2.3.4" status=503 duration=1200ms bytes=52"#,
    ),
    (
        "express",
        "[2025-11-25T10:30:45Z] INFO: POST /api/auth/login - 200 (45ms)\n  requestId: 9f1c\n  duration: 45ms\n  responseSize: 0.45KB",
    ),
    (
        "alb",
        r#"https 2020-01-01T00:55:04.127531Z app/front-lb/0f3c 198.51.100.4:40112 10.1.2.3:8080 0.001 0.102 0.000 200 200 225 24950 "GET https://shop.example.net:443/cart/view.html HTTP/1.1" "Mozilla/5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2"#,
    ),
    (
        "haproxy",
        r#"192.0.2.41:51544 [25/Sep/2018:06:05:27.584] web_tls~ app_pool/node2 0/0/0/72/72 200 7456 - - ---- 5/4/0/1/0 0/0 "POST /account/ HTTP/1.1""#,
    ),
    (
        "error_log",
        r#"2021/09/30 09:23:53 [error] 4411#4411: *9 open() failed, client: 127.0.0.1, server: _, request: "GET /admin HTTP/1.1", host: "example.com""#,
    ),
];

fn parsers(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, line) in LINES {
        let kind = Kind::from_name(name).expect("known format");
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(*name, |b| {
            let mut p = FileParser::new(FormatSpec::Fixed(kind));
            b.iter(|| {
                let mut ev = Event::default();
                p.parse(std::hint::black_box(line), &mut ev).expect("parses");
                ev
            })
        });
    }
    let w3c_header = "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken";
    let w3c_line = "2023-03-14 08:15:00 10.20.30.40 GET /catalog/item q=lamp 443 - 198.51.100.12 Mozilla/5.0+(Windows) 200 0 0 1564";
    group.throughput(Throughput::Bytes(w3c_line.len() as u64));
    group.bench_function("w3c", |b| {
        let mut p = FileParser::new(FormatSpec::Fixed(Kind::W3c));
        p.parse(w3c_header, &mut Event::default()).expect("header");
        b.iter(|| {
            let mut ev = Event::default();
            p.parse(std::hint::black_box(w3c_line), &mut ev).expect("parses");
            ev
        })
    });
    let custom = logwarden::parse::CustomFormat::nginx(r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time"#)
        .expect("compiles");
    let line = LINES[0].1;
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("custom_nginx", |b| {
        let mut p = FileParser::new(FormatSpec::Custom(custom.clone().into()));
        b.iter(|| {
            let mut ev = Event::default();
            p.parse(std::hint::black_box(line), &mut ev).expect("parses");
            ev
        })
    });
    group.bench_function("auto_combined", |b| {
        let mut p = FileParser::new(FormatSpec::Auto);
        b.iter(|| {
            let mut ev = Event::default();
            p.parse(std::hint::black_box(line), &mut ev).expect("parses");
            ev
        })
    });
    group.finish();
}

fn events(n: usize) -> Vec<Event> {
    let mut g = TrafficGenerator::new(42);
    let mut p = FileParser::new(FormatSpec::Fixed(Kind::Combined));
    (0..n)
        .map(|i| {
            let line = g.line(1_764_000_000_000 + i as i64 * 10);
            let mut ev = Event::default();
            p.parse(&line, &mut ev).expect("generated lines parse");
            ev.raw = line;
            ev.id = format!("bench:{i}");
            ev
        })
        .collect()
}

fn redaction(c: &mut Criterion) {
    let evs = events(1000);
    let bytes: usize = evs.iter().map(|e| e.raw.len()).sum();
    let redactor = Redactor::new(&[], Replacement::Fixed);
    let mut group = c.benchmark_group("redact");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("1000_generated_events", |b| {
        b.iter_batched(
            || evs.clone(),
            |evs| evs.into_iter().map(|e| redactor.redact(e)).collect::<Vec<_>>(),
            BatchSize::LargeInput,
        )
    });
    let hashed = Redactor::new(&[], Replacement::KeyedHash(b"bench-key".to_vec()));
    group.bench_function("1000_generated_events_hashed", |b| {
        b.iter_batched(
            || evs.clone(),
            |evs| evs.into_iter().map(|e| hashed.redact(e)).collect::<Vec<_>>(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Request text the rules read: path, query, user-agent and referer.
fn request_bytes(evs: &[Event]) -> usize {
    evs.iter()
        .map(|e| {
            [&e.path, &e.query, &e.user_agent, &e.referer]
                .iter()
                .map(|f| f.as_deref().map_or(0, str::len))
                .sum::<usize>()
        })
        .sum()
}

fn rules(c: &mut Criterion) {
    let detector = logwarden::rules::Detector::new(None, 5).expect("built-in rules");
    let evs = events(1000);
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Bytes(request_bytes(&evs) as u64));
    // The pipeline's way: each worker remembers the verdicts on recent field values, and the
    // generated traffic, like real traffic, repeats its user agents and paths.
    group.bench_function("1000_generated_events", |b| {
        b.iter(|| evs.iter().map(|e| detector.tags(e).score).sum::<u32>())
    });
    // Every field evaluated afresh: the cost for values never seen before.
    let set = logwarden::rules::RuleSet::load(None).expect("built-in rules");
    group.bench_function("1000_generated_events_unremembered", |b| {
        b.iter(|| evs.iter().map(|e| set.evaluate(e).score).sum::<u32>())
    });
    // A real access log, with the repetition real traffic has; the corpus is found as the tests
    // find it (absent, the bench is skipped, except under CI=true).
    if let Some(corpus) = common::corpus() {
        let log = corpus.join("logs/elastic-examples/apache_logs");
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut p = FileParser::new(FormatSpec::Fixed(Kind::Combined));
        let real: Vec<Event> = text
            .lines()
            .filter_map(|line| {
                let mut ev = Event::default();
                p.parse(line, &mut ev).ok().map(|_| ev)
            })
            .collect();
        group.throughput(Throughput::Bytes(request_bytes(&real) as u64));
        group.bench_function(format!("{}_events_of_elastic_apache_logs", real.len()), |b| {
            b.iter(|| real.iter().map(|e| detector.tags(e).score).sum::<u32>())
        });
        group.bench_function(format!("{}_events_of_elastic_apache_logs_unremembered", real.len()), |b| {
            b.iter(|| real.iter().map(|e| set.evaluate(e).score).sum::<u32>())
        });
    }
    group.finish();
}

fn indexing(c: &mut Criterion) {
    let redactor = Redactor::new(&[], Replacement::Fixed);
    let evs: Vec<_> = events(10_000).into_iter().map(|e| redactor.redact(e)).collect();
    let mut group = c.benchmark_group("index");
    // Building the tantivy documents alone, as the pipeline thread does before handing them
    // to tantivy's threads.
    let (_, fields) = logwarden::index::schema::build();
    group.throughput(Throughput::Elements(1000));
    group.bench_function("document_1000_events", |b| {
        b.iter(|| evs[..1000].iter().map(|e| fields.document(e, true)).collect::<Vec<_>>())
    });
    group.sample_size(10);
    group.throughput(Throughput::Elements(evs.len() as u64));
    group.bench_function("write_and_commit_10000_events", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("tempdir"),
            |dir| {
                let catalog = Catalog::open(dir.path()).expect("catalog");
                let (mut store, _) = IndexStore::open(catalog, 64 << 20, 14).expect("store");
                for (i, e) in evs.iter().enumerate() {
                    let origin = Origin {
                        fingerprint: "bench".into(),
                        offset: i as u64,
                        end_offset: i as u64 + 1,
                        path: "b".into(),
                    };
                    store.add(&origin, e).expect("add");
                }
                store.close().expect("close");
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn statistics(c: &mut Criterion) {
    use logwarden::stats::{Filter, GroupBy, MinuteRange, Recorder, Stats};
    use std::sync::Arc;
    let evs = events(1000);
    let mut group = c.benchmark_group("stats");
    group.throughput(Throughput::Elements(evs.len() as u64));
    group.bench_function("record_1000_events_and_publish", |b| {
        let mut recorder = Recorder::new(Arc::new(Stats::default()));
        b.iter(|| {
            for e in &evs {
                recorder.record(e);
            }
            recorder.flush();
        })
    });
    // A day of 2,000 routes at about 10 million requests: every route in every minute, and
    // the 17 minutes after it, where "the last 24 hours" below ends.
    const MINUTES: i64 = 1440 + 17;
    let stats = Arc::new(Stats::default());
    let mut recorder = Recorder::new(stats.clone());
    let day0 = 1_764_000_000_000i64 - 1_764_000_000_000i64 % 86_400_000;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut ev = Event { method: Some("GET".into()), ..Event::default() };
    // Test runs (debug builds) check that the benchmark works, on a smaller day.
    let route_count = if cfg!(debug_assertions) { 20 } else { 2000 };
    let routes: Vec<String> = (0..route_count).map(|r| format!("/api/v1/resource{r}/:id")).collect();
    for minute in 0..MINUTES {
        for (r, route) in routes.iter().enumerate() {
            for k in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ev.timestamp_ms = day0 + minute * 60_000 + k * 1000;
                ev.route = Some(route.clone());
                ev.status = Some(if x.is_multiple_of(50) { 500 } else { 200 });
                // Log-uniform from 1 ms to 8 s, a different spread per route.
                ev.duration_ms = Some((1u64 << (x % (10 + r as u64 % 4))) as f64 + (x >> 50) as f64 / 1000.0);
                recorder.record(&ev);
            }
        }
        recorder.flush();
    }
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    // Not hour-aligned, as "the last 24 hours" never is.
    let range = MinuteRange::covering(day0 + 17 * 60_000, day0 + 86_400_000 + 17 * 60_000);
    // Asked again (a dashboard refreshing): the whole hours come from the kept span.
    group.bench_function("query_24h_all_2000_routes", |b| {
        b.iter(|| stats.report(range, &Filter::default(), GroupBy::Route).groups.len())
    });
    // The first time over these hours (after the hour turns): the span is built. Six ranges an
    // hour apart, in turn, so that none is kept from the run before.
    let shifted: Vec<MinuteRange> = (0..6i64)
        .map(|k| {
            MinuteRange::covering(day0 + 17 * 60_000 - k * 3_600_000, day0 + 86_400_000 + 17 * 60_000 - k * 3_600_000)
        })
        .collect();
    let mut turn = 0;
    group.bench_function("query_24h_all_2000_routes_first_time", |b| {
        b.iter(|| {
            turn = (turn + 1) % shifted.len();
            stats.report(shifted[turn], &Filter::default(), GroupBy::Route).groups.len()
        })
    });
    // Asked again while lines come in: each flush writes into the current hour, so the
    // minutes at that edge (17 of every route) are merged again each time.
    let mut late = Event { route: Some(routes[0].clone()), status: Some(200), ..ev.clone() };
    group.bench_function("query_24h_all_2000_routes_while_ingesting", |b| {
        b.iter(|| {
            late.timestamp_ms = day0 + (MINUTES - 1) * 60_000;
            late.duration_ms = Some(12.5);
            recorder.record(&late);
            recorder.flush();
            stats.report(range, &Filter::default(), GroupBy::Route).groups.len()
        })
    });
    group.bench_function("query_24h_one_route", |b| {
        let f = Filter { route: Some(routes[7].clone()), ..Filter::default() };
        b.iter(|| stats.report(range, &f, GroupBy::None).total.count)
    });
    // The same number of requests with traffic as sites have it: route k gets a share
    // proportional to 1/k (Zipf), so a few routes are busy and most are quiet.
    let zipf = Arc::new(Stats::default());
    let mut recorder = Recorder::new(zipf.clone());
    let weights: Vec<f64> = (1..=routes.len()).map(|k| 1.0 / k as f64).collect();
    let per_minute = 3.0 * routes.len() as f64;
    let scale = per_minute / weights.iter().sum::<f64>();
    let mut carry = vec![0.0f64; routes.len()];
    for minute in 0..MINUTES {
        for (r, route) in routes.iter().enumerate() {
            carry[r] += weights[r] * scale;
            while carry[r] >= 1.0 {
                carry[r] -= 1.0;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ev.timestamp_ms = day0 + minute * 60_000 + (x % 60_000) as i64;
                ev.route = Some(route.clone());
                ev.status = Some(if x.is_multiple_of(50) { 500 } else { 200 });
                ev.duration_ms = Some((1u64 << (x % (10 + r as u64 % 4))) as f64 + (x >> 50) as f64 / 1000.0);
                recorder.record(&ev);
            }
        }
        recorder.flush();
    }
    group.bench_function("query_24h_all_2000_routes_zipf", |b| {
        b.iter(|| zipf.report(range, &Filter::default(), GroupBy::Route).groups.len())
    });
    group.finish();
}

// The daemon's allocator. It is not tuned here (`tune_allocator` runs in the daemon's `main`),
// which only changes when freed pages go back to the system.
#[global_allocator]
static ALLOCATOR: logwarden::Allocator = mimalloc::MiMalloc;

criterion_group!(benches, parsers, redaction, rules, indexing, statistics);
criterion_main!(benches);
