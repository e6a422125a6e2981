use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use logwarden::cli::{self, Cli, Command};
use logwarden::config::{ConfigFile, FormatName, ReadFrom, SourceConfig};
use logwarden::daemon;
use logwarden::index::search::SearchRequest;
use logwarden::index::{Catalog, now_ms};

fn init_logging(level: &str) {
    let filter = std::env::var("LOGWARDEN_LOG").unwrap_or_else(|_| format!("logwarden={level},warn"));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[global_allocator]
static ALLOCATOR: logwarden::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    logwarden::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { common, listen, tail, format, read_from, stdin, role } => {
            let mut cfg = cli::load(&common)?;
            if let Some(l) = listen {
                cfg.api.listen = l;
            }
            init_logging(&cfg.log_level);
            if role == cli::RoleArg::Query {
                anyhow::ensure!(tail.is_empty() && !stdin, "a query node reads no logs: drop --tail and --stdin");
                daemon::run_query_node(cfg)?;
            } else {
                cli::apply_tail(&mut cfg, &tail, format, read_from);
                daemon::run(cfg, stdin)?;
            }
        }
        Command::CheckConfig { common } => {
            let cfg = cli::load(&common)?;
            println!(
                "configuration is valid: {} source(s), data in {}, API on {}",
                cfg.sources.len(),
                cfg.data_dir.display(),
                cfg.api.listen
            );
        }
        Command::Demo { listen, rate } => demo(listen, rate)?,
        Command::Ingest { common, format, quiet, files } => {
            let cfg = cli::load(&common)?;
            init_logging("warn");
            let spec = SourceConfig { format: FormatName::from(format), ..SourceConfig::default() }.format_spec();
            let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
            let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let started = std::time::Instant::now();
            let summary = daemon::ingest(&cfg, spec, &files, &|bytes, records| {
                bar.set_position(bytes);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!("{records} lines, {:.0} lines/s", records as f64 / secs));
            })?;
            bar.finish_and_clear();
            println!(
                "ingested {} lines ({} indexed, {} unparsed, {} skipped) from {} file(s) in {:.1}s: {:.0} lines/s, {:.1} MiB/s",
                summary.records,
                summary.indexed,
                summary.parse_errors,
                summary.skipped,
                files.len(),
                summary.seconds,
                summary.records as f64 / summary.seconds.max(0.001),
                summary.bytes as f64 / 1_048_576.0 / summary.seconds.max(0.001)
            );
        }
        Command::Rules { command } => rules(command)?,
        Command::Search { common, from, to, limit, json, query } => {
            let cfg = cli::load(&common)?;
            let catalog = Catalog::open(&cfg.data_dir.join("index")).context("opening the index")?;
            let time = |name: &str, v: &Option<String>| -> Result<Option<i64>> {
                v.as_deref()
                    .map(|s| {
                        logwarden::api::parse_time(s, now_ms())
                            .with_context(|| format!("--{name} {s:?} is not RFC 3339, epoch seconds or now-15m"))
                    })
                    .transpose()
            };
            let req = SearchRequest {
                query,
                from_ms: time("from", &from)?,
                to_ms: time("to", &to)?,
                limit,
                ..Default::default()
            };
            let result = catalog.search(&req)?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
            } else {
                for hit in &result.hits {
                    writeln!(out, "{}", summary_line(hit))?;
                }
                writeln!(out, "{} of {} matching events ({:.1} ms)", result.hits.len(), result.total, result.took_ms)?;
            }
        }
        Command::Tail { common, url, token, since, interval, json, query } => {
            let cfg = cli::load(&common)?;
            let url = url.unwrap_or_else(|| format!("http://{}", cfg.api.listen));
            let token = match token {
                Some(t) => t,
                None => std::fs::read_to_string(cfg.data_dir.join("api-token"))
                    .map(|t| t.trim().to_string())
                    .context("no --token, no LOGWARDEN_API_TOKEN and no api-token in the data directory")?,
            };
            let since = match since {
                Some(s) => {
                    now_ms()
                        - humantime::parse_duration(&s).with_context(|| format!("--since {s:?}"))?.as_millis() as i64
                }
                None => now_ms(),
            };
            tail(&url, &token, &query, since, *interval, json)?;
        }
        Command::Alerts { common, json } => {
            let cfg = cli::load(&common)?;
            let state = logwarden::alert::Persisted::load(&cfg.data_dir)
                .with_context(|| format!("reading the alert state in {}", cfg.data_dir.display()))?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&state)?)?;
            } else {
                let fmt = logwarden::parse::timestamp::format_rfc3339;
                writeln!(out, "{:<8} {:<28} {:<24} {:>12}  LABELS", "STATE", "ALERT", "SINCE", "VALUE")?;
                for i in state.instances.values() {
                    let labels: Vec<String> = i
                        .labels
                        .iter()
                        .filter(|(k, _)| *k != "alertname")
                        .map(|(k, v)| format!("{k}={}", v.escape_default()))
                        .collect();
                    let st = if i.state == logwarden::alert::State::Firing { "firing" } else { "pending" };
                    writeln!(
                        out,
                        "{st:<8} {:<28} {:<24} {:>12.3}  {}",
                        i.rule,
                        fmt(i.active_since_ms),
                        i.value,
                        labels.join(" ")
                    )?;
                }
                writeln!(
                    out,
                    "{} alerts, {} notifications waiting; latest transitions:",
                    state.instances.len(),
                    state.outbox.len()
                )?;
                for h in state.history.iter().rev().take(10) {
                    writeln!(out, "  {} {:<8} {} ({})", fmt(h.at_ms), h.status, h.rule, h.fingerprint)?;
                }
            }
        }
        Command::Stats { common, from, to, group_by, query, limit, json } => {
            let cfg = cli::load(&common)?;
            stats_table(StatsArgs { cfg, from, to, group_by, query, limit, json })?;
        }
    }
    Ok(())
}

fn stats_table(cli: StatsArgs) -> Result<()> {
    use logwarden::stats::{self, Filter, GroupBy, MinuteRange, Thresholds};
    let StatsArgs { cfg, from, to, group_by, query, limit, json } = cli;
    let now = now_ms();
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| {
                logwarden::api::parse_time(s, now)
                    .with_context(|| format!("--{name} {s:?} is not RFC 3339, epoch seconds or now-15m"))
            })
            .transpose()
    };
    let to = time("to", &to)?.unwrap_or(now);
    let from = time("from", &from)?.unwrap_or(to - 24 * 3_600_000);
    anyhow::ensure!(from < to, "--from must be before --to");
    let group = GroupBy::parse(&group_by)
        .with_context(|| format!("--group-by {group_by:?}: one of route, status, status_class, method, host, none"))?;
    // The same whole minutes the daemon's buckets answer for.
    let range = MinuteRange::covering(from, to);
    let catalog = Catalog::open(&cfg.data_dir.join("index")).context("opening the index")?;
    let req = SearchRequest { query, from_ms: Some(range.from_ms), to_ms: Some(range.to_ms), ..Default::default() };
    let report = stats::report_from_index(
        &catalog,
        &req,
        &Thresholds::new(&cfg.stats),
        &Filter::default(),
        group,
        range.seconds(),
    )?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let mut groups = report.groups;
    groups.sort_by(|a, b| b.summary.count.cmp(&a.summary.count).then_with(|| a.key.cmp(&b.key)));
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let width = groups.iter().map(|g| g.key.chars().count()).max().unwrap_or(5).clamp(5, 60);
    writeln!(
        out,
        "{:<width$} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6} {:>6}",
        "GROUP", "COUNT", "RPS", "MEAN_MS", "P50_MS", "P95_MS", "P99_MS", "MAX_MS", "5XX%", "SLOW", "APDEX"
    )?;
    let row = |out: &mut std::io::StdoutLock, key: &str, s: &logwarden::stats::Summary| {
        // Keys come from log lines: escape control characters.
        let key: String = key.chars().flat_map(char::escape_default).take(width).collect();
        writeln!(
            out,
            "{key:<width$} {:>8} {:>8.3} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6.2} {:>6} {:>6}",
            s.count,
            s.rps,
            ms(s.mean_ms),
            ms(s.p50_ms),
            ms(s.p95_ms),
            ms(s.p99_ms),
            ms(s.max_ms),
            s.error_rate * 100.0,
            s.slow_count,
            s.apdex.map_or("-".into(), |a| format!("{a:.2}"))
        )
    };
    for g in groups.iter().take(limit) {
        row(&mut out, &g.key, &g.summary)?;
    }
    row(&mut out, "TOTAL", &report.total)?;
    Ok(())
}

struct StatsArgs {
    cfg: ConfigFile,
    from: Option<String>,
    to: Option<String>,
    group_by: String,
    query: String,
    limit: usize,
    json: bool,
}

/// Polls the search API for events after the last one printed, oldest first, until killed.
fn tail(url: &str, token: &str, query: &str, since: i64, interval: Duration, json: bool) -> Result<()> {
    use logwarden::index::search::Cursor;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut cursor: Option<Cursor> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let mut req = agent
            .get(&format!("{}/api/v1/search", url.trim_end_matches('/')))
            .header("authorization", &format!("Bearer {token}"))
            .query("q", query)
            .query("sort", "oldest")
            .query("limit", "1000")
            .query("from", (since / 1000).to_string());
        if let Some(c) = &cursor {
            req = req.query("cursor", c.encode());
        }
        let mut resp = req.call().with_context(|| format!("asking {url}"))?;
        let status = resp.status();
        let body: serde_json::Value =
            resp.body_mut().read_json().context("the API answered something other than JSON")?;
        anyhow::ensure!(
            status == 200,
            "the API answered {status}: {}",
            body["error"]["message"].as_str().unwrap_or("?")
        );
        let hits = body["hits"].as_array().cloned().unwrap_or_default();
        for hit in &hits {
            if json {
                writeln!(out, "{hit}")?;
            } else {
                writeln!(out, "{}", summary_line(hit))?;
            }
        }
        out.flush()?;
        if let Some(next) = Cursor::following(cursor.as_ref(), &hits) {
            cursor = Some(next);
        }
        if hits.len() < 1000 {
            std::thread::sleep(interval);
        }
    }
}

/// One line per hit; control characters are escaped so a crafted log line cannot drive the
/// terminal.
fn summary_line(hit: &serde_json::Value) -> String {
    let s = |k: &str| hit.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
    let ts = hit
        .get("timestamp_ms")
        .and_then(|v| v.as_i64())
        .map_or("-".into(), logwarden::parse::timestamp::format_rfc3339);
    let status = hit.get("status").and_then(|v| v.as_u64()).map_or("-".into(), |v| v.to_string());
    let dur = hit.get("duration_ms").and_then(|v| v.as_f64()).map_or("-".into(), |v| format!("{v:.0}ms"));
    let line = match hit.get("parse_error").and_then(|v| v.as_str()) {
        Some(_) => format!("{ts} unparsed {}", s("raw")),
        None => format!("{ts} {status} {} {} {dur} {}", s("method"), s("path"), s("client_ip")),
    };
    line.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

fn demo(listen: std::net::SocketAddr, rate: u32) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("logwarden-demo-").tempdir().context("creating a temporary directory")?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path: PathBuf = logs.join("access.log");
    let mut cfg = ConfigFile::load(None)?;
    cfg.data_dir = dir.path().join("data");
    cfg.api.listen = listen;
    cfg.sources = vec![SourceConfig {
        include: vec![format!("{}/*.log", logs.display())],
        read_from: ReadFrom::Beginning,
        ..SourceConfig::default()
    }];
    init_logging(&cfg.log_level);
    let writer_path = log_path.clone();
    std::thread::spawn(move || {
        let mut generator = logwarden::demo::TrafficGenerator::new(now_ms() as u64);
        let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&writer_path) else { return };
        let pause = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        loop {
            let line = generator.line(now_ms());
            if writeln!(file, "{line}").is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    });
    let auth = format!("-H \"Authorization: Bearer $(cat {}/api-token)\"", cfg.data_dir.display());
    println!(
        "logwarden demo: writing {rate} requests/s to {}\n\
         Try, in another terminal:\n  \
         curl -s 'http://{listen}/health'\n  \
         curl -s {auth} 'http://{listen}/api/v1/search?q=status:>=500&limit=5'\n  \
         curl -s {auth} 'http://{listen}/api/v1/search?q=duration_ms:>1000&from=now-5m'\n  \
         curl -s {auth} 'http://{listen}/api/v1/search?q=attack:true&limit=5'\n  \
         curl -s {auth} 'http://{listen}/api/v1/search?q=REDACTED&limit=3'   (planted secrets come back [REDACTED])\n\
         Press Ctrl-C to stop; the temporary directory is removed.",
        log_path.display()
    );
    daemon::run(cfg, false)?;
    drop(dir);
    Ok(())
}

fn rules(command: cli::RulesCommand) -> Result<()> {
    use logwarden::redact::{Redactor, Replacement};
    use logwarden::rules::{Detector, RuleSet, eval};
    match command {
        cli::RulesCommand::Check { rules } => {
            let set = RuleSet::load(rules.as_deref())?;
            let checked = set.check()?;
            println!("{} rules loaded, {checked} examples and counter-examples pass", set.len());
        }
        cli::RulesCommand::Eval { cases, rules, threshold, json } => {
            let detector = Detector::new(rules.as_deref(), threshold)?;
            let redactor = Redactor::new(&[], Replacement::Fixed);
            let mut tallies = std::collections::BTreeMap::new();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for path in &cases {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let case: serde_json::Value = serde_json::from_str(line)
                        .with_context(|| format!("{}:{}: not a JSON case", path.display(), n + 1))?;
                    let result = eval::evaluate(&case, &redactor, &detector);
                    eval::count(&mut tallies, &result);
                    writeln!(out, "{}", serde_json::to_string(&result)?)?;
                }
            }
            if !json {
                write!(out, "\n{}", eval::table(&tallies))?;
            }
        }
    }
    Ok(())
}
