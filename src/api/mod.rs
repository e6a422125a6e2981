//! The HTTP API. `router(state, limits)` is what the daemon serves and what tests call
//! directly. Every error has one shape, `{"error": {"code", "message"}}`: a clear message and a
//! 4xx for the client's mistakes, a generic message and a 500 for ours (the detail goes to our
//! log).
//!
//! Cross-cutting concerns are tower layers: security headers, a body size limit, a per-request
//! timeout, a concurrency limit, and request counting for `/metrics`. Everything but `/health`
//! needs a bearer token (`auth`).

mod alerts;
pub mod auth;
mod dashboard;
mod export;
pub mod https;
mod metrics;
mod openapi;
mod stats;
mod tail;

pub use stats::encode;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::index::search::{Cursor, MAX_LIMIT, SearchError, SearchRequest, Sort};
use crate::index::{Catalog, now_ms};
use crate::metrics::IngestCounters;
use crate::parse::timestamp::parse_any;
use crate::stats::Stats;
pub use auth::{Auth, Role};

#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub counters: Arc<IngestCounters>,
    pub auth: Arc<Auth>,
    pub limiter: Arc<auth::RateLimiter>,
    pub requests: Arc<RequestCounts>,
    pub stats: Arc<Stats>,
    /// Alert rules, states and history, when alerting is on.
    pub alerts: Option<Arc<crate::alert::deliver::AlertHandle>>,
    pub https: Arc<https::HttpsPolicy>,
    /// Query mode: search, statistics and reports come from ClickHouse.
    pub fleet: Option<Arc<crate::sink::fleet::Fleet>>,
    /// Health of the sinks (ClickHouse), for `/health/detailed` and `/metrics`.
    pub sinks: Vec<Arc<crate::sink::spool::SinkHealth>>,
    /// Searches slower than this are logged.
    pub slow_query_ms: f64,
    pub started: Instant,
}

impl AppState {
    pub fn new(catalog: Arc<Catalog>, counters: Arc<IngestCounters>, auth: Auth, rate_per_minute: u32) -> Self {
        Self {
            catalog,
            counters,
            auth: Arc::new(auth),
            limiter: Arc::new(auth::RateLimiter::new(rate_per_minute)),
            requests: Arc::default(),
            stats: Arc::default(),
            alerts: None,
            https: Arc::default(),
            sinks: Vec::new(),
            fleet: None,
            slow_query_ms: 500.0,
            started: Instant::now(),
        }
    }

    /// Serves these statistics (the pipeline's) rather than empty ones.
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }
}

/// API requests by route and status, and query latencies, for `/metrics`.
#[derive(Default)]
pub struct RequestCounts {
    by_route: Mutex<HashMap<(String, u16), u64>>,
    search: Mutex<LatencyHistogram>,
    cache: Mutex<HashMap<String, CachedResult>>,
}

/// A search result kept for repeated identical requests (a dashboard refreshing), valid until
/// the next commit or `CACHE_TTL`, whichever comes first.
struct CachedResult {
    commit_ms: i64,
    at: Instant,
    result: crate::index::search::SearchResult,
}

const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_ENTRIES: usize = 256;

/// Upper bounds, in seconds, of the search latency buckets.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// A Prometheus-style histogram: a count per bucket, not every sample, so it stays small.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_s: f64,
}

impl LatencyHistogram {
    fn record(&mut self, seconds: f64) {
        for (b, le) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= le {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum_s += seconds;
    }
}

/// Request limits, applied as layers.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024, request_timeout: Duration::from_secs(10), max_concurrent_requests: 64 }
    }
}

/// The Content-Security-Policy: our own origin for everything the dashboard loads, nothing
/// inline, nothing evaluated, no plugins, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), magnetometer=(), gyroscope=(), accelerometer=()";

/// Headers set on every response. `X-XSS-Protection: 0` follows current OWASP guidance: the
/// legacy browser XSS auditor it controlled could itself be abused, and CSP replaces it.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("permissions-policy", PERMISSIONS_POLICY),
    ("x-xss-protection", "0"),
    ("cache-control", "no-store"),
];

pub fn router(state: AppState, limits: &Limits) -> Router {
    let read = Router::new()
        .route("/api/v1/search", get(search_get).post(search_post))
        .route("/api/v1/search/export", get(export::export))
        .route("/api/v1/events/{id}/context", get(context))
        .route("/api/v1/fields/{field}/top", get(top_values))
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/stats/timeseries", get(stats::timeseries))
        .route("/api/v1/stats/slow", get(stats::slow))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route("/api/v1/tail", get(tail::tail))
        .route("/api/v1/security-report", get(alerts::security_report))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_read));
    let admin = Router::new()
        .route("/health/detailed", get(metrics::health_detailed))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_admin));
    let mut app = Router::new()
        .route("/health", get(health))
        .route("/", get(dashboard::index))
        .route("/assets/app.js", get(dashboard::app_js))
        .route("/assets/app.css", get(dashboard::app_css))
        .route("/assets/vendor/uplot/uPlot.iife.min.js", get(dashboard::uplot_js))
        .route("/assets/vendor/uplot/uPlot.min.css", get(dashboard::uplot_css))
        .merge(read)
        .merge(admin)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
        .layer(tower::limit::ConcurrencyLimitLayer::new(limits.max_concurrent_requests))
        .layer(middleware::from_fn_with_state(state.clone(), https::enforce));
    for (name, value) in SECURITY_HEADERS {
        app = app
            .layer(SetResponseHeaderLayer::overriding(HeaderName::from_static(name), HeaderValue::from_static(value)));
    }
    app.with_state(state)
}

/// The one error shape: `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code, such as `invalid_query` or `missing_token`.
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
}

/// Every error the API returns.
#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        code: &'static str,
        message: String,
    },
    Unauthorized {
        code: &'static str,
        message: String,
    },
    Forbidden(String),
    NotFound(String),
    TooManyRequests(String),
    /// The endpoint is not available in this mode (query mode serves a subset).
    NotAvailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            ApiError::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, code, message),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", m),
            ApiError::NotAvailable(m) => (StatusCode::NOT_IMPLEMENTED, "not_in_this_mode", m),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error, see the daemon's log".to_string())
            }
        };
        (status, Json(ErrorBody { error: ErrorDetail { code: code.to_string(), message } })).into_response()
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest { code: "invalid_parameters", message: e.body_text() }
    }
}

/// A search request over a time range, for the endpoints that take `q`, `from` and `to` only.
fn range_request(q: Option<String>, from: Option<&str>, to: Option<&str>) -> Result<SearchRequest, ApiError> {
    Ok(SearchRequest {
        query: q.unwrap_or_default(),
        from_ms: time_param("from", from)?,
        to_ms: time_param("to", to)?,
        limit: 1,
        ..Default::default()
    })
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Query(m) => ApiError::BadRequest { code: "invalid_query", message: m },
            SearchError::Internal(e) => ApiError::Internal(e.to_string()),
            SearchError::Backend(e) => ApiError::Internal(e),
        }
    }
}

/// Endpoints that read the local index only.
fn not_in_query_mode(state: &AppState, what: &str) -> Result<(), ApiError> {
    match state.fleet {
        Some(_) => Err(ApiError::NotAvailable(format!("{what} is served by the agents, not by a query node"))),
        None => Ok(()),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {} {}", req.method(), req.uri().path()))
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    if let Ok(mut m) = state.requests.by_route.lock() {
        *m.entry((route, resp.status().as_u16())).or_default() += 1;
    }
    resp
}

/// Cheap liveness: 200 while ingestion works, 503 once it has failed or while reading is paused
/// (a full or read-only data directory). No token needed.
#[utoipa::path(get, path = "/health", security(()), responses(
    (status = 200, description = "ingestion works", body = serde_json::Value),
    (status = 503, description = "ingestion has failed or is paused", body = serde_json::Value),
))]
async fn health(State(state): State<AppState>) -> Response {
    let c = &state.counters;
    let failed = c.failed.load(Ordering::Relaxed);
    let paused = c.paused();
    let body = json!({
        "status": if failed { "failing" } else if paused.is_some() { "paused" } else { "ok" },
        "paused": paused,
        "events_indexed": IngestCounters::get(&c.events_indexed),
        "parse_errors": IngestCounters::get(&c.parse_errors),
        "skipped": IngestCounters::get(&c.skipped),
        "attacks": IngestCounters::get(&c.attacks),
        "last_commit_ms": c.last_commit_ms.load(Ordering::Relaxed),
        "sources": c.per_source.lock().map(|m| json!(*m)).unwrap_or(serde_json::Value::Null),
    });
    let status = if failed || paused.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

/// Search parameters, from the query string (GET) or a JSON body (POST).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    /// The query, in tantivy's language over the event fields: `status:[500 TO 599] AND
    /// route:"/api/users/:id"`, `client_ip:203.0.113.0/24`, words and "phrases".
    q: Option<String>,
    /// Start (inclusive): RFC 3339, epoch seconds or `now-15m`.
    from: Option<String>,
    /// End (exclusive), in the same forms.
    to: Option<String>,
    /// Hits per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>)]
    #[schema(value_type = Option<u32>)]
    limit: Option<serde_json::Value>,
    /// `newest` (default), `oldest` or `duration_ms` (slowest first).
    sort: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Comma-separated event fields to return (all when absent).
    fields: Option<String>,
}

/// The fields a hit may have, for `fields=`.
const EVENT_FIELDS: &[&str] = &[
    "id",
    "timestamp_ms",
    "host",
    "source",
    "format",
    "method",
    "path",
    "route",
    "query",
    "protocol",
    "status",
    "duration_ms",
    "upstream_ms",
    "bytes_sent",
    "request_bytes",
    "client_ip",
    "user_agent",
    "referer",
    "request_id",
    "client_id",
    "user_id",
    "level",
    "message",
    "headers",
    "body",
    "raw",
    "parse_error",
    "flags",
    "anomalies",
    "families",
    "anomaly_score",
    "severity",
    "attack",
];

/// `RFC 3339`, epoch seconds, or relative to now: `now`, `now-15m`, `now-2h`, `now-7d`.
pub fn parse_time(s: &str, now: i64) -> Option<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Some(now);
        }
        let (sign, amount) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => return None,
        };
        let ms = humantime::parse_duration(amount).ok()?.as_millis() as i64;
        return Some(now + sign * ms);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs * 1000);
    }
    parse_any(s)
}

fn time_param(name: &'static str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            parse_time(v, now_ms()).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_time",
                message: format!(
                    "`{name}` must be RFC 3339, epoch seconds or now-<duration> (like now-15m), got {v:?}"
                ),
            })
        })
        .transpose()
}

fn limit_param(v: Option<&serde_json::Value>) -> Result<usize, ApiError> {
    let text = match v {
        None => return Ok(100),
        Some(serde_json::Value::String(s)) if s.is_empty() => return Ok(100),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest {
            code: "invalid_limit",
            message: format!("`limit` must be a number from 1 to {MAX_LIMIT}, got {text}"),
        }),
    }
}

/// Searches the events: newest first by default, a page at a time.
#[utoipa::path(get, path = "/api/v1/search", params(SearchParams), responses(
    (status = 200, description = "a page of hits", body = crate::index::search::SearchResult),
    openapi::ReadErrors,
))]
async fn search_get(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    run_search(state, p).await
}

/// The same search with the parameters as a JSON body.
#[utoipa::path(post, path = "/api/v1/search", request_body = SearchParams, responses(
    (status = 200, description = "a page of hits", body = crate::index::search::SearchResult),
    (status = 413, description = "the body is larger than `max_body_bytes`"),
    (status = 415, description = "the body is not JSON"),
    (status = 422, description = "the JSON does not have the expected shape", body = ErrorBody),
    openapi::ReadErrors,
))]
async fn search_post(
    State(state): State<AppState>,
    body: Result<Json<SearchParams>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(p) = body.map_err(|e| ApiError::BadRequest { code: "invalid_body", message: e.body_text() })?;
    run_search(state, p).await
}

async fn run_search(state: AppState, p: SearchParams) -> Result<Response, ApiError> {
    let from_ms = time_param("from", p.from.as_deref())?;
    let to_ms = time_param("to", p.to.as_deref())?;
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f >= t
    {
        return Err(ApiError::BadRequest { code: "invalid_time", message: "`from` must be before `to`".into() });
    }
    let limit = limit_param(p.limit.as_ref())?;
    let sort = Sort::parse(p.sort.as_deref().unwrap_or("")).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_sort",
        message: format!("`sort` must be newest, oldest or duration_ms, got {:?}", p.sort.clone().unwrap_or_default()),
    })?;
    let cursor = p.cursor.as_deref().filter(|c| !c.is_empty()).map(Cursor::decode).transpose()?;
    let fields: Option<Vec<String>> = match p.fields.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(list) => {
            let names: Vec<String> = list.split(',').map(|f| f.trim().to_string()).collect();
            if let Some(bad) = names.iter().find(|n| !EVENT_FIELDS.contains(&n.as_str())) {
                return Err(ApiError::BadRequest {
                    code: "invalid_fields",
                    message: format!("unknown field {bad:?} in `fields`"),
                });
            }
            Some(names)
        }
    };
    // Relative times are part of the key as written, so `now-15m` is served from the cache
    // only within the TTL and until the next commit.
    let key = format!("{:?}|{:?}|{:?}|{limit}|{sort:?}|{:?}", p.q, p.from, p.to, p.cursor);
    let req = SearchRequest { query: p.q.unwrap_or_default(), from_ms, to_ms, limit, sort, cursor };
    let commit_ms = state.counters.last_commit_ms.load(Ordering::Relaxed);
    let cached = state.requests.cache.lock().ok().and_then(|c| {
        c.get(&key).filter(|e| e.commit_ms == commit_ms && e.at.elapsed() < CACHE_TTL).map(|e| e.result.clone())
    });
    let hit = cached.is_some();
    let mut result = match cached {
        Some(r) => r,
        None => {
            let (catalog, fleet) = (state.catalog.clone(), state.fleet.clone());
            let query_len = req.query.len();
            let r = tokio::task::spawn_blocking(move || match fleet {
                Some(f) => f.search(&req),
                None => catalog.search(&req),
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            if let Ok(mut h) = state.requests.search.lock() {
                h.record(r.took_ms / 1000.0);
            }
            // The query text may hold what someone searched for; log its shape, not its words.
            if r.took_ms > state.slow_query_ms {
                tracing::warn!(took_ms = r.took_ms, query_chars = query_len, total = r.total, "slow search");
            }
            if let Ok(mut c) = state.requests.cache.lock() {
                if c.len() >= CACHE_ENTRIES {
                    c.retain(|_, e| e.at.elapsed() < CACHE_TTL && e.commit_ms == commit_ms);
                }
                if c.len() < CACHE_ENTRIES {
                    c.insert(key, CachedResult { commit_ms, at: Instant::now(), result: r.clone() });
                }
            }
            r
        }
    };
    if let Some(fields) = fields {
        for hit in &mut result.hits {
            if let Some(obj) = hit.as_object_mut() {
                obj.retain(|k, _| fields.iter().any(|f| f == k));
            }
        }
    }
    let mut resp = Json(result).into_response();
    resp.headers_mut()
        .insert(HeaderName::from_static("x-cache"), HeaderValue::from_static(if hit { "hit" } else { "miss" }));
    Ok(resp)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ContextParams {
    /// Events read before it from the same file (default 20, at most 200).
    before: Option<usize>,
    /// Events read after it (default 20, at most 200).
    after: Option<usize>,
}

/// The most neighbours one context request returns on each side.
const MAX_CONTEXT: usize = 200;

/// An event with the events read just before and after it from the same file.
#[utoipa::path(get, path = "/api/v1/events/{id}/context",
    params(("id" = String, Path, description = "an event id, as search returns it"), ContextParams),
    responses(
        (status = 200, description = "the event and its neighbours", body = crate::index::search::Context),
        (status = 404, description = "no event has this id", body = ErrorBody),
        openapi::ReadErrors,
    ))]
async fn context(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    params: Result<Query<ContextParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    not_in_query_mode(&state, "context")?;
    let (before, after) = (p.before.unwrap_or(20), p.after.unwrap_or(20));
    if before > MAX_CONTEXT || after > MAX_CONTEXT {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            message: format!("`before` and `after` are at most {MAX_CONTEXT}"),
        });
    }
    let catalog = state.catalog.clone();
    let found = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || catalog.context(&id, before, after))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??
    };
    match found {
        Some(ctx) => Ok(Json(ctx).into_response()),
        None => Err(ApiError::NotFound(format!("no event with id {id:?}"))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TopParams {
    /// Only the events matching this query.
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// How many values, 1 to 100 (default 10).
    n: Option<usize>,
}

/// Fields `top` can count, with the index field behind each.
const TOP_FIELDS: &[(&str, &str)] = &[
    ("client_ip", "client_ip"),
    ("route", "route"),
    ("path", "path"),
    ("status", "status"),
    ("method", "method"),
    ("host", "host"),
    ("user_agent", "ua"),
    ("level", "level"),
    ("format", "format"),
    ("source", "source"),
    ("user_id", "user_id"),
    ("client_id", "client_id"),
    ("severity", "severity"),
    ("family", "family"),
    ("anomalies", "anomalies"),
];

/// The most frequent values of a field among the matching events.
#[utoipa::path(get, path = "/api/v1/fields/{field}/top",
    params(("field" = String, Path, description = "client_ip, route, path, status, method, host, user_agent, level, format, source, user_id, client_id, severity, family or anomalies"), TopParams),
    responses((status = 200, description = "values and counts", body = serde_json::Value), openapi::ReadErrors))]
async fn top_values(
    State(state): State<AppState>,
    axum::extract::Path(field): axum::extract::Path<String>,
    params: Result<Query<TopParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    not_in_query_mode(&state, "top values")?;
    let Some((_, index_field)) = TOP_FIELDS.iter().find(|(name, _)| *name == field) else {
        let names: Vec<&str> = TOP_FIELDS.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::BadRequest {
            code: "invalid_field",
            message: format!("cannot count {field:?}; one of {}", names.join(", ")),
        });
    };
    let n = p.n.unwrap_or(10);
    if !(1..=100).contains(&n) {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            message: format!("`n` must be from 1 to 100, got {n}"),
        });
    }
    let req = range_request(p.q, p.from.as_deref(), p.to.as_deref())?;
    let catalog = state.catalog.clone();
    let index_field = index_field.to_string();
    let top = tokio::task::spawn_blocking(move || catalog.top_values(&index_field, &req, n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let values: Vec<serde_json::Value> =
        top.into_iter().map(|(value, count)| json!({"value": value, "count": count})).collect();
    Ok(Json(json!({"field": field, "values": values})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_000_000_000;
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("now-15m", now), Some(now - 900_000));
        assert_eq!(parse_time("1700000000", now), Some(1_700_000_000_000));
        assert_eq!(parse_time("2000-10-10T20:55:36Z", now), Some(971_211_336_000));
        assert_eq!(parse_time("yesterday", now), None);
        assert_eq!(parse_time("now*2", now), None);
    }
}
