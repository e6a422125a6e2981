//! Wiring: the only module that knows every stage. `run` starts the sources, the pipeline and
//! the API and stops them in order; `ingest` runs the same pipeline over files read once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use crate::alert::deliver::Alerting;
use crate::api::https::{Cidr, HttpsPolicy, Tls};
use crate::api::{AppState, Auth, Limits, Role, router};
use crate::config::{ApiMode, ConfigFile, RedactMode};
use crate::filter::Filter;
use crate::index::{Catalog, IndexError, IndexStore};
use crate::metrics::IngestCounters;
use crate::parse::FormatSpec;
use crate::pipeline::{Pipeline, Stages};
use crate::redact::{Redactor, Replacement};
use crate::rules::Detector;
use crate::sink::spool::{SinkHealth, SpoolReader, SpoolWriter};
use crate::source::{self, Batch, FileSettings, FileSource, Framer};
use crate::stats::routes::{RouteTable, Template};
use crate::stats::{self, Recorder, Stats, Thresholds};

/// Batches in flight between the sources and the pipeline; beyond this, reading waits.
const CHANNEL_BATCHES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("the ingest pipeline stopped: {0}")]
    Pipeline(String),
}

/// What outlives a restart of the ingest pipeline: the API and the alerts hold these.
struct Shared {
    catalog: Arc<Catalog>,
    counters: Arc<IngestCounters>,
    stats: Arc<Stats>,
}

/// The ClickHouse sink's reading end and health, when configured.
type Sink = Option<(SpoolReader, Arc<SinkHealth>)>;

/// A pipeline ready to run, and where each file resumes.
struct Ready {
    pipeline: Pipeline,
    resume: HashMap<String, u64>,
}

fn redactor(cfg: &ConfigFile) -> Result<Redactor, DaemonError> {
    let replacement = match cfg.redact.mode {
        RedactMode::Replace => Replacement::Fixed,
        RedactMode::Hash => {
            let key = std::env::var(&cfg.redact.hash_key_env).map_err(|_| {
                DaemonError::Config(format!(
                    "redact.mode = \"hash\" needs the environment variable {}",
                    cfg.redact.hash_key_env
                ))
            })?;
            Replacement::KeyedHash(key.into_bytes())
        }
    };
    Ok(Redactor::new(&cfg.redact.extra_keys, replacement))
}

fn open_shared(cfg: &ConfigFile) -> Result<(Shared, Sink), DaemonError> {
    let catalog = Catalog::open(&cfg.data_dir.join("index"))?;
    let shared = Shared { catalog, counters: Arc::default(), stats: Arc::new(Stats::new(Thresholds::new(&cfg.stats))) };
    let sink = if cfg.clickhouse.enabled {
        let health = Arc::new(SinkHealth { name: "clickhouse".into(), ..SinkHealth::default() });
        let dir = spool_dir(cfg);
        let reader =
            SpoolReader::open(&dir, health.clone()).map_err(|source| DaemonError::Read { path: dir, source })?;
        Some((reader, health))
    } else {
        None
    };
    Ok((shared, sink))
}

fn spool_dir(cfg: &ConfigFile) -> PathBuf {
    cfg.data_dir.join("spool").join("clickhouse")
}

/// Opens the index writer where the last commit left it, rebuilds the statistics from what the
/// index holds, and builds the pipeline: at start, and again after ingestion paused.
fn open_pipeline(
    cfg: &ConfigFile,
    specs: Vec<FormatSpec>,
    shared: &Shared,
    sink: Option<&Arc<SinkHealth>>,
) -> Result<Ready, DaemonError> {
    let Shared { catalog, counters, stats } = shared;
    let (store, resume) =
        IndexStore::open(catalog.clone(), cfg.index.writer_memory_mb * 1024 * 1024, cfg.index.retention_days)?;
    let store = store.with_min_free(cfg.index.min_free_mb << 20);
    let detector = if cfg.rules.enabled {
        Some(
            Detector::new(cfg.rules.dir.as_deref(), cfg.rules.anomaly_threshold)
                .map_err(|e| DaemonError::Config(e.to_string()))?,
        )
    } else {
        None
    };
    // Rebuilt aside and swapped in whole, so the API never sees half of it.
    let started = Instant::now();
    let mut recorder = Recorder::new(Arc::new(Stats::new(Thresholds::new(&cfg.stats))));
    let requests = stats::rebuild(catalog, &store.replaying(), &mut recorder)
        .map_err(|e| DaemonError::Pipeline(format!("cannot rebuild statistics from the index: {e}")))?;
    recorder.move_into(stats.clone());
    tracing::info!(requests, took_ms = started.elapsed().as_millis() as u64, "statistics rebuilt from the index");
    let templates = cfg.stats.routes.iter().filter_map(|r| Template::parse(r).ok()).collect();
    let routes =
        RouteTable::new(templates, cfg.stats.max_routes, catalog.distinct_terms("route")?, stats.folded_routes.clone());
    let spool = match sink {
        Some(health) => {
            let dir = spool_dir(cfg);
            let writer = SpoolWriter::open(&dir, cfg.clickhouse.spool_max_mb << 20, health.clone())
                .map_err(|source| DaemonError::Read { path: dir, source })?;
            Some(writer)
        }
        None => None,
    };
    let stages =
        Stages { filter: Filter::new(&cfg.filter), routes, redactor: redactor(cfg)?, detector, recorder, spool };
    let pipeline = Pipeline::new(specs, stages, store, counters.clone());
    Ok(Ready { pipeline, resume: resume.into_iter().collect() })
}

fn file_settings(cfg: &ConfigFile) -> Vec<FileSettings> {
    cfg.sources
        .iter()
        .map(|s| FileSettings {
            include: s.include.clone(),
            exclude: s.exclude.iter().filter_map(|g| glob::Pattern::new(g).ok()).collect(),
            read_from: s.read_from,
            max_line_bytes: s.max_line_bytes,
            poll_interval: s.poll_interval,
        })
        .collect()
}

fn spawn_pipeline(
    pipeline: Pipeline,
    rx: std::sync::mpsc::Receiver<Batch>,
    interval: Duration,
    counters: Arc<IngestCounters>,
    shutdown: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), IndexError>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let result = pipeline.run(rx, interval, &shutdown);
            if let Err(e) = &result {
                counters.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "ingest pipeline stopped");
            }
            result
        })
        .expect("spawn pipeline thread")
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(cfg: ConfigFile, read_stdin: bool) -> Result<(), DaemonError> {
    let specs: Vec<FormatSpec> = cfg.sources.iter().map(|s| s.format_spec()).collect();
    let (shared, sink) = open_shared(&cfg)?;
    let first = open_pipeline(&cfg, specs.clone(), &shared, sink.as_ref().map(|(_, h)| h))?;
    let Shared { catalog, counters, stats } = &shared;
    let (catalog, counters, stats) = (catalog.clone(), counters.clone(), stats.clone());
    let shutdown = Arc::new(AtomicBool::new(false));

    let auth = api_auth(&cfg)?;
    let (runtime, listener, addr) = bind(&cfg)?;

    let ingest = Ingest { cfg: cfg.clone(), specs, shared, sink: sink.as_ref().map(|(_, h)| h.clone()), read_stdin };
    let stop = shutdown.clone();
    let pipeline_thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || ingest.supervise(first, &stop))
        .expect("spawn pipeline thread");
    let mut sinks = Vec::new();
    let sink_thread = sink.map(|(reader, health)| {
        sinks.push(health.clone());
        let (ch, stop) = (cfg.clickhouse.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("sink-clickhouse".into())
            .spawn(move || crate::sink::run(&ch, reader, health, &stop))
            .expect("spawn the ClickHouse sink")
    });
    let mut alerts = None;
    let alert_thread = if cfg.alerts.enabled {
        let alerting =
            Alerting::new(&cfg.alerts, cfg.data_dir.clone(), format!("http://{addr}")).map_err(DaemonError::Config)?;
        alerts = Some(alerting.handle());
        let (stats, catalog, counters, stop) = (stats.clone(), catalog.clone(), counters.clone(), shutdown.clone());
        Some(
            std::thread::Builder::new()
                .name("alerts".into())
                .spawn(move || alerting.run(stats, catalog, counters, stop))
                .expect("spawn alert thread"),
        )
    } else {
        None
    };

    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), sources = cfg.sources.len(), "logwarden is running");
    let mut state = AppState::new(catalog, counters, auth, cfg.api.rate_limit_per_minute).with_stats(stats);
    state.alerts = alerts;
    state.sinks = sinks;
    serve(&cfg, &runtime, listener, addr, state, shutdown.clone())?;

    tracing::info!("shutting down");
    shutdown.store(true, Ordering::Relaxed);
    if let Some(t) = alert_thread {
        let _ = t.join();
    }
    if let Some(t) = sink_thread {
        let _ = t.join();
    }
    // A stdin reader may still hold a sender while it blocks on read; the pipeline stops on
    // the shutdown flag and whatever it had not committed is read again after a restart.
    pipeline_thread.join().map_err(|_| DaemonError::Pipeline("pipeline thread panicked".into()))?
}

/// Runs ingestion: sources and pipeline, again and again when it pauses on a storage error.
struct Ingest {
    cfg: ConfigFile,
    specs: Vec<FormatSpec>,
    shared: Shared,
    sink: Option<Arc<SinkHealth>>,
    read_stdin: bool,
}

impl Ingest {
    /// Runs the pipeline until `shutdown`. When it stops on an error (a full or read-only data
    /// directory, say), reading pauses: the error shows in the log and in `/health`, and once
    /// the data directory takes writes again with `index.min_free_mb` to spare, ingestion starts
    /// over from the last commit, exactly as after a restart, so nothing is lost or doubled.
    /// Lines from stdin cannot be read again: with stdin, such an error stops ingestion.
    fn supervise(self, first: Ready, shutdown: &AtomicBool) -> Result<(), DaemonError> {
        let counters = self.shared.counters.clone();
        let mut next = first;
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let Err(e) = self.run_once(next, shutdown) else { return Ok(()) };
            if self.read_stdin {
                counters.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "ingest pipeline stopped");
                return Err(e);
            }
            // The state of the disk says more than the error of whichever writer hit it first.
            let reason = self.storage_ready().err().unwrap_or_else(|| e.to_string());
            tracing::error!(error = %e, %reason, "ingestion paused; it resumes from the last commit once the data directory takes writes");
            counters.set_paused(Some(reason));
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            loop {
                if !wait(shutdown, backoff) {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                if let Err(reason) = self.storage_ready() {
                    counters.set_paused(Some(reason));
                    continue;
                }
                match open_pipeline(&self.cfg, self.specs.clone(), &self.shared, self.sink.as_ref()) {
                    Ok(ready) => {
                        tracing::info!("the data directory takes writes again: ingestion resumes from the last commit");
                        counters.set_paused(None);
                        next = ready;
                        break;
                    }
                    Err(e) => counters.set_paused(Some(e.to_string())),
                }
            }
        }
    }

    fn storage_ready(&self) -> Result<(), String> {
        crate::index::storage_ready(&self.cfg.data_dir.join("index"), self.cfg.index.min_free_mb << 20)
    }

    /// One run of the sources and the pipeline, until `shutdown` or an error.
    fn run_once(&self, ready: Ready, shutdown: &AtomicBool) -> Result<(), DaemonError> {
        let Ready { pipeline, resume } = ready;
        let (tx, rx) = sync_channel::<Batch>(CHANNEL_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let sources = FileSource::new(file_settings(&self.cfg), resume, tx.clone(), stop.clone());
        let source_thread = std::thread::Builder::new()
            .name("source".into())
            .spawn(move || sources.run())
            .expect("spawn source thread");
        if self.read_stdin {
            let (tx, stop) = (tx.clone(), stop.clone());
            let max_line = self.cfg.sources.first().map_or(1024 * 1024, |s| s.max_line_bytes);
            std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || source::read_stdin(tx, max_line, stop))
                .expect("spawn stdin thread");
        }
        drop(tx);
        let result = pipeline.run(rx, self.cfg.index.commit_interval, shutdown);
        // The pipeline has stopped and dropped its end of the channel: the sources stop too. A
        // stdin reader may still block on read; what it sent and was not committed is lost.
        stop.store(true, Ordering::Relaxed);
        let _ = source_thread.join();
        result.map_err(DaemonError::from)
    }
}

/// Sleeps for `d` unless `shutdown` is set first; false when it was.
fn wait(shutdown: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if shutdown.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !shutdown.load(Ordering::Relaxed)
}

/// A client has this long to send a request's headers: slow clients (slowloris) are cut off
/// instead of holding connections open for ever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line and headers above this size are refused (431), before any handler runs.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Limits every connection of the API: header read timeout and header size.
fn guard(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    builder.http1().header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEADER_BYTES);
}

/// Serves the API on `listener` (TLS when configured, and the redirect listener) until SIGINT
/// or SIGTERM, which also sets `shutdown`.
fn serve(
    cfg: &ConfigFile,
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    mut state: AppState,
    shutdown: Arc<AtomicBool>,
) -> Result<(), DaemonError> {
    let limits = Limits {
        max_body_bytes: cfg.api.max_body_bytes,
        request_timeout: cfg.api.request_timeout,
        max_concurrent_requests: cfg.api.max_concurrent_requests,
    };
    state.slow_query_ms = cfg.api.slow_query_ms as f64;
    let tls = cfg.api.tls_cert.clone().zip(cfg.api.tls_key.clone());
    let policy = HttpsPolicy {
        production: cfg.api.mode == ApiMode::Production,
        tls_port: tls.as_ref().map(|_| addr.port()),
        trusted_proxies: cfg.api.trusted_proxies.iter().filter_map(|p| Cidr::parse(p)).collect(),
    };
    // The redirect listener answers every request but /health with a 301 to the TLS API.
    let redirect_app = cfg.api.redirect_listen.map(|_| {
        let mut s = state.clone();
        s.https = Arc::new(HttpsPolicy { production: true, ..policy.clone() });
        router(s, &limits)
    });
    state.https = Arc::new(policy);
    let app = router(state, &limits);
    let stop = shutdown;
    let served: Result<(), std::io::Error> = runtime.block_on(async move {
        let handle = axum_server::Handle::<SocketAddr>::new();
        let signal = {
            let handle = handle.clone();
            async move {
                shutdown_signal().await;
                stop.store(true, Ordering::Relaxed);
                handle.graceful_shutdown(Some(Duration::from_secs(5)));
            }
        };
        if let (Some(redirect_addr), Some(redirect_app)) = (cfg.api.redirect_listen, redirect_app) {
            let l = std::net::TcpListener::bind(redirect_addr)?;
            l.set_nonblocking(true)?;
            tracing::info!(addr = %redirect_addr, "redirecting plain HTTP to HTTPS");
            let mut server = axum_server::from_tcp(l)?.handle(handle.clone());
            guard(server.http_builder());
            let service = redirect_app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { server.serve(service).await });
        }
        tokio::spawn(signal);
        let listener = listener.into_std()?;
        match tls {
            Some((cert, key)) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await.map_err(|e| {
                    std::io::Error::other(format!("TLS certificate {} or key {}: {e}", cert.display(), key.display()))
                })?;
                let service = app.layer(axum::Extension(Tls)).into_make_service_with_connect_info::<SocketAddr>();
                let mut server = axum_server::from_tcp_rustls(listener, config)?.handle(handle);
                guard(server.http_builder());
                server.serve(service).await
            }
            None => {
                let service = app.into_make_service_with_connect_info::<SocketAddr>();
                let mut server = axum_server::from_tcp(listener)?.handle(handle);
                guard(server.http_builder());
                server.serve(service).await
            }
        }
    });
    served.map_err(|source| DaemonError::Listen { addr, source })?;

    Ok(())
}

/// The API's runtime and its bound listener (bound first, so a busy port fails the start).
fn bind(cfg: &ConfigFile) -> Result<(tokio::runtime::Runtime, tokio::net::TcpListener, SocketAddr), DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Pipeline(e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(cfg.api.listen))
        .map_err(|source| DaemonError::Listen { addr: cfg.api.listen, source })?;
    let addr = listener.local_addr().map_err(|source| DaemonError::Listen { addr: cfg.api.listen, source })?;
    Ok((runtime, listener, addr))
}

/// Query mode: no sources and no index of its own; the API answers from the ClickHouse the
/// agents fill.
pub fn run_query_node(cfg: ConfigFile) -> Result<(), DaemonError> {
    let catalog = Catalog::open(&cfg.data_dir.join("index"))?;
    let auth = api_auth(&cfg)?;
    let (runtime, listener, addr) = bind(&cfg)?;
    let thresholds = Thresholds::new(&cfg.stats);
    let mut state = AppState::new(catalog, Arc::default(), auth, cfg.api.rate_limit_per_minute)
        .with_stats(Arc::new(Stats::new(thresholds.clone())));
    state.fleet = Some(Arc::new(crate::sink::fleet::Fleet::new(&cfg.clickhouse, thresholds)));
    tracing::info!(%addr, clickhouse = %cfg.clickhouse.url, "logwarden query node is running");
    serve(&cfg, &runtime, listener, addr, state, Arc::new(AtomicBool::new(false)))?;
    tracing::info!("shutting down");
    Ok(())
}

/// The API's tokens: configured ones, `LOGWARDEN_API_TOKEN`, or on loopback a generated one.
fn api_auth(cfg: &ConfigFile) -> Result<Auth, DaemonError> {
    let mut tokens = Vec::new();
    for t in &cfg.api.tokens {
        let secret = std::env::var(&t.token_env).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
            DaemonError::Config(format!("api token `{}`: the environment variable {} is not set", t.name, t.token_env))
        })?;
        tokens.push((t.name.clone(), t.role, secret));
    }
    if let Ok(secret) = std::env::var("LOGWARDEN_API_TOKEN")
        && !secret.is_empty()
    {
        tokens.push(("LOGWARDEN_API_TOKEN".to_string(), Role::Admin, secret));
    }
    if tokens.is_empty() {
        if !cfg.api.listen.ip().is_loopback() {
            return Err(DaemonError::Config(format!(
                "refusing to serve the API on {} without a token: set LOGWARDEN_API_TOKEN or [[api.tokens]]",
                cfg.api.listen
            )));
        }
        tokens.push(("generated".to_string(), Role::Admin, generated_token(&cfg.data_dir)?));
    }
    Ok(Auth::new(tokens))
}

/// The admin token kept in `<data_dir>/api-token` (mode 0600), created and printed the first
/// time.
fn generated_token(data_dir: &std::path::Path) -> Result<String, DaemonError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("api-token");
    let io = |source| DaemonError::Read { path: path.clone(), source };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut raw = [0u8; 24];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw)).map_err(io)?;
    let token = format!("lw_{}", hex::encode(raw));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    writeln!(f, "{token}").map_err(io)?;
    println!("logwarden: generated an admin API token, kept in {} (shown once):\n  {token}", path.display());
    Ok(token)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// What `ingest` did.
#[derive(Debug, Clone, Copy)]
pub struct IngestSummary {
    pub records: u64,
    pub bytes: u64,
    pub indexed: u64,
    pub parse_errors: u64,
    pub skipped: u64,
    pub seconds: f64,
}

/// Reads `files` once into the data directory, resuming files ingested before, and returns
/// after the final commit. `progress` is called with (bytes, records) as reading goes.
pub fn ingest(
    cfg: &ConfigFile,
    spec: FormatSpec,
    files: &[PathBuf],
    progress: &dyn Fn(u64, u64),
) -> Result<IngestSummary, DaemonError> {
    let started = Instant::now();
    let (shared, sink) = open_shared(cfg)?;
    let Ready { pipeline, resume } = open_pipeline(cfg, vec![spec], &shared, sink.as_ref().map(|(_, h)| h))?;
    let counters = shared.counters.clone();
    let (tx, rx) = sync_channel::<Batch>(CHANNEL_BATCHES);
    let pipeline_thread =
        spawn_pipeline(pipeline, rx, cfg.index.commit_interval, counters.clone(), Arc::new(AtomicBool::new(false)));
    let max_line = cfg.sources.first().map_or(1024 * 1024, |s| s.max_line_bytes);
    let mut bytes = 0;
    let mut read_error = None;
    for path in files {
        match read_once(path, &resume, max_line, &tx, &mut |n| {
            bytes += n;
            progress(bytes, IngestCounters::get(&counters.records_read));
        }) {
            Ok(()) => {}
            Err(e) => {
                read_error = Some(DaemonError::Read { path: path.clone(), source: e });
                break;
            }
        }
    }
    drop(tx);
    let result = pipeline_thread.join().map_err(|_| DaemonError::Pipeline("pipeline thread panicked".into()))?;
    result?;
    if let Some(e) = read_error {
        return Err(e);
    }
    Ok(IngestSummary {
        records: IngestCounters::get(&counters.records_read),
        bytes,
        indexed: IngestCounters::get(&counters.events_indexed),
        parse_errors: IngestCounters::get(&counters.parse_errors),
        skipped: IngestCounters::get(&counters.skipped),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads one file to its end from its checkpoint, if it has one.
fn read_once(
    path: &std::path::Path,
    resume: &HashMap<String, u64>,
    max_line: usize,
    tx: &SyncSender<Batch>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    use std::io::Read;
    let fp = match source::fingerprint::fingerprint(path)? {
        Some(fp) => fp,
        // No complete first line: name it by its whole (short) content.
        None => {
            let mut all = Vec::new();
            source::fingerprint::open_content(path)?.read_to_end(&mut all)?;
            all.push(b'\n');
            source::fingerprint::of_reader(&all[..])?.unwrap_or_else(|| "empty".into())
        }
    };
    let start = resume.get(&fp).copied().unwrap_or(0);
    let mut reader = source::fingerprint::open_content(path)?;
    std::io::copy(&mut (&mut reader).take(start), &mut std::io::sink())?;
    let mut framer = Framer::new(start, max_line);
    let mut buf = vec![0u8; 256 * 1024];
    let mut records = Vec::new();
    let name = path.display().to_string();
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            framer.finish(&mut records);
        } else {
            framer.push(&buf[..n], &mut records);
        }
        let batch = source::to_items(&mut records, &fp, &name, 0);
        if !batch.is_empty() && tx.send(batch).is_err() {
            return Err(std::io::Error::other("the pipeline stopped"));
        }
        progress(n as u64);
        if n == 0 {
            return Ok(());
        }
    }
}
