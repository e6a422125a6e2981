//! `/api/v1/stats`, `/api/v1/stats/timeseries` and `/api/v1/stats/slow`.
//!
//! Without `q` the figures come from the minute buckets (ranges widen to whole minutes); with
//! `q` they are computed from the index's fast fields over exactly the matching events.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, time_param};
use crate::index::now_ms;
use crate::index::search::{SearchRequest, Sort};
use crate::sink::fleet::{FleetFilter, group_expr};
use crate::stats::{self, Filter, Group, GroupBy, MinuteRange, Summary};

/// The default range when neither `from` nor `window` is given.
const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;
/// The most points one timeseries returns.
const MAX_POINTS: i64 = 1440;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    from: Option<String>,
    to: Option<String>,
    /// A sliding window ending now (or at `to`): `1m`, `5m`, `15m`, `1h`, `24h`, ...
    window: Option<String>,
    route: Option<String>,
    method: Option<String>,
    status: Option<String>,
    host: Option<String>,
    group_by: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    limit: Option<usize>,
    /// How many routes `slowest` and `failing` (and `/stats/slow`) list.
    n: Option<usize>,
    /// Timeseries step.
    interval: Option<String>,
    /// `/stats/slow`: the slowest requests listed per route.
    requests: Option<usize>,
    /// Query mode: only this agent (host running logwarden).
    agent: Option<String>,
}

fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest { code, message }
}

/// `[from, to)` in ms from `from`/`to`/`window`.
fn range(p: &StatsParams) -> Result<(i64, i64), ApiError> {
    let to = time_param("to", p.to.as_deref())?.unwrap_or_else(now_ms);
    let from = match (time_param("from", p.from.as_deref())?, p.window.as_deref().filter(|w| !w.is_empty())) {
        (Some(_), Some(_)) => return Err(bad("invalid_time", "give `from` or `window`, not both".into())),
        (Some(f), None) => f,
        (None, Some(w)) => {
            let d = humantime::parse_duration(w)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad("invalid_time", format!("`window` must be a duration like 5m or 24h, got {w:?}")))?;
            to - d.as_millis().min(i64::MAX as u128 / 2) as i64
        }
        (None, None) => to - DEFAULT_WINDOW_MS,
    };
    if from >= to {
        return Err(bad("invalid_time", "`from` must be before `to`".into()));
    }
    Ok((from, to))
}

fn filter(p: &StatsParams) -> Filter {
    let some = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    Filter { route: some(&p.route), method: some(&p.method), status: some(&p.status), host: some(&p.host) }
}

/// Query mode's filter: the same parameters plus `agent`.
fn fleet_filter(p: &StatsParams) -> FleetFilter {
    let f = filter(p);
    FleetFilter {
        route: f.route,
        method: f.method,
        status: f.status,
        host: f.host,
        agent: p.agent.clone().filter(|a| !a.is_empty()),
    }
}

fn group_by(p: &StatsParams) -> Result<GroupBy, ApiError> {
    let g = p.group_by.as_deref().unwrap_or("");
    GroupBy::parse(g).ok_or_else(|| {
        bad(
            "invalid_group_by",
            format!("`group_by` must be route, status, status_class, method, host or none, got {g:?}"),
        )
    })
}

fn query(p: &StatsParams) -> Option<String> {
    p.q.clone().filter(|q| !q.trim().is_empty() && q.trim() != "*")
}

/// What a group may be sorted by, highest first (`key` sorts by name).
fn sort_key(name: &str) -> Option<fn(&Summary) -> f64> {
    fn ms(v: Option<f64>) -> f64 {
        v.unwrap_or(-1.0)
    }
    Some(match name {
        "" | "count" => |s| s.count as f64,
        "p50" => |s| ms(s.p50_ms),
        "p90" => |s| ms(s.p90_ms),
        "p95" => |s| ms(s.p95_ms),
        "p99" => |s| ms(s.p99_ms),
        "p999" => |s| ms(s.p999_ms),
        "mean" => |s| ms(s.mean_ms),
        "max" => |s| ms(s.max_ms),
        "errors" => |s| s.server_errors as f64,
        "error_rate" => |s| s.error_rate,
        "slow" => |s| s.slow_count as f64,
        "slow_ratio" => |s| s.slow_ratio,
        "apdex" => |s| -s.apdex.unwrap_or(2.0),
        _ => return None,
    })
}

/// Sorts groups by `by` (highest first), then by key, so equal data gives equal bytes.
fn sorted(mut groups: Vec<Group>, by: fn(&Summary) -> f64) -> Vec<Group> {
    groups.sort_by(|a, b| by(&b.summary).total_cmp(&by(&a.summary)).then_with(|| a.key.cmp(&b.key)));
    groups
}

/// Runs a blocking index read off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::index::search::SearchError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(e.to_string()))??)
}

/// Latency, errors, slow requests and Apdex per route (or status, method, host) and in total.
#[utoipa::path(get, path = "/api/v1/stats", params(StatsParams), responses(
    (status = 200, description = "groups and total", body = serde_json::Value),
    super::openapi::ReadErrors,
))]
pub async fn stats(
    State(state): State<AppState>,
    params: Result<Query<StatsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let (from, to) = range(&p)?;
    let fleet_group = p.group_by.clone().unwrap_or_default();
    if state.fleet.is_some() {
        group_expr(&fleet_group).ok_or_else(|| {
            bad(
                "invalid_group_by",
                format!(
                    "`group_by` must be route, status, status_class, method, host, agent or none, got {fleet_group:?}"
                ),
            )
        })?;
    } else if p.agent.as_deref().is_some_and(|a| !a.is_empty()) || fleet_group == "agent" {
        return Err(bad("invalid_parameters", "`agent` works on a query node (run --role query)".into()));
    }
    let (filter, group_by) = (filter(&p), if state.fleet.is_some() { GroupBy::Route } else { group_by(&p)? });
    let sort_name = p.sort.clone().unwrap_or_default();
    let by = sort_key(&sort_name).ok_or_else(|| {
        bad(
            "invalid_sort",
            format!(
                "`sort` must be count, p50, p90, p95, p99, p999, mean, max, errors, error_rate, slow, slow_ratio or apdex, got {sort_name:?}"
            ),
        )
    })?;
    let limit = p.limit.unwrap_or(100);
    let n = p.n.unwrap_or(10);
    if !(1..=10_000).contains(&limit) || !(1..=100).contains(&n) {
        return Err(bad("invalid_limit", "`limit` must be from 1 to 10000 and `n` from 1 to 100".into()));
    }
    let (report, from, to, source) = match (&state.fleet, query(&p)) {
        (Some(fleet), q) => {
            let r = MinuteRange::covering(from, to);
            let (fleet, f, q) = (fleet.clone(), fleet_filter(&p), q.unwrap_or_default());
            let report = blocking(move || fleet.report(r.from_ms, r.to_ms, &q, &f, &fleet_group)).await?;
            (report, r.from_ms, r.to_ms, "clickhouse")
        }
        (None, None) => {
            // A day of thousands of routes takes tens of milliseconds: not on the async workers.
            let r = MinuteRange::covering(from, to);
            let stats = state.stats.clone();
            let report = tokio::task::spawn_blocking(move || stats.report(r, &filter, group_by))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            (report, r.from_ms, r.to_ms, "buckets")
        }
        (None, Some(q)) => {
            let (catalog, stats) = (state.catalog.clone(), state.stats.clone());
            let req = SearchRequest { query: q, from_ms: Some(from), to_ms: Some(to), ..Default::default() };
            let seconds = (to - from) as f64 / 1000.0;
            let report = blocking(move || {
                stats::report_from_index(&catalog, &req, &stats.thresholds, &filter, group_by, seconds)
            })
            .await?;
            (report, from, to, "index")
        }
    };
    let groups_total = report.groups.len();
    let slowest: Vec<Group> = sorted(report.groups.clone(), |s| s.p99_ms.unwrap_or(-1.0))
        .into_iter()
        .filter(|g| g.summary.timed_count > 0)
        .take(n)
        .collect();
    let failing: Vec<Group> = sorted(report.groups.clone(), |s| s.server_errors as f64)
        .into_iter()
        .filter(|g| g.summary.server_errors > 0)
        .take(n)
        .collect();
    let mut groups = sorted(report.groups, by);
    groups.truncate(limit);
    Ok(Json(json!({
        "from": from,
        "to": to,
        "source": source,
        "group_by": p.group_by.clone().filter(|g| !g.is_empty()).unwrap_or_else(|| "route".into()),
        "total": report.total,
        "groups": groups,
        "groups_total": groups_total,
        "slowest": slowest,
        "failing": failing,
        "folded_routes": state.stats.folded_routes.load(std::sync::atomic::Ordering::Relaxed),
    }))
    .into_response())
}

/// The total figures per interval, for charts.
#[utoipa::path(get, path = "/api/v1/stats/timeseries", params(StatsParams), responses(
    (status = 200, description = "points", body = serde_json::Value),
    super::openapi::ReadErrors,
))]
pub async fn timeseries(
    State(state): State<AppState>,
    params: Result<Query<StatsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let (from, to) = range(&p)?;
    let filter = filter(&p);
    let interval = match p.interval.as_deref().filter(|i| !i.is_empty()) {
        None => 60_000,
        Some(i) => humantime::parse_duration(i)
            .ok()
            .map(|d| d.as_millis())
            .filter(|ms| *ms >= 60_000 && ms % 60_000 == 0)
            .ok_or_else(|| {
                bad("invalid_interval", format!("`interval` must be whole minutes (1m, 5m, 1h), got {i:?}"))
            })? as i64,
    };
    let whole = MinuteRange::covering(from, to);
    let (from, to) = (whole.from_ms.div_euclid(interval) * interval, whole.to_ms);
    let points = (to - from + interval - 1) / interval;
    if points > MAX_POINTS {
        return Err(bad(
            "too_many_points",
            format!("{points} points of {interval} ms; at most {MAX_POINTS}: widen `interval` or narrow the range"),
        ));
    }
    let steps: Vec<i64> = (0..points).map(|i| from + i * interval).collect();
    if let Some(fleet) = state.fleet.clone() {
        let (f, q) = (fleet_filter(&p), query(&p).unwrap_or_default());
        let series = blocking(move || fleet.timeseries(from, to, interval, &q, &f)).await?;
        let out: Vec<serde_json::Value> = series.into_iter().map(|(t, s)| point(t, s)).collect();
        return Ok(Json(json!({"from": from, "to": to, "interval_ms": interval, "points": out})).into_response());
    }
    let out: Vec<serde_json::Value> = match query(&p) {
        None => steps
            .iter()
            .map(|&t| {
                let r = MinuteRange { from_ms: t, to_ms: t + interval };
                point(t, state.stats.report(r, &filter, GroupBy::None).total)
            })
            .collect(),
        Some(q) => {
            let (catalog, stats) = (state.catalog.clone(), state.stats.clone());
            let req = SearchRequest { query: q, from_ms: Some(from), to_ms: Some(to), ..Default::default() };
            let collected = blocking(move || stats::series_from_index(&catalog, &req, &stats.thresholds)).await?;
            steps
                .iter()
                .map(|&t| {
                    let (lo, hi) = (t / 60_000, (t + interval) / 60_000);
                    let items = collected.iter().filter(|(m, _, _)| (lo..hi).contains(m)).map(|(_, k, s)| (k, s));
                    point(t, stats::summarise(items, &filter, GroupBy::None, interval as f64 / 1000.0).total)
                })
                .collect()
        }
    };
    Ok(Json(json!({"from": from, "to": to, "interval_ms": interval, "points": out})).into_response())
}

fn point(t: i64, s: Summary) -> serde_json::Value {
    let mut v = json!(s);
    if let Some(o) = v.as_object_mut() {
        o.insert("t".into(), json!(t));
    }
    v
}

/// Routes by p99, each with its slowest requests from the index and links to them.
/// The slowest routes, each with its slowest requests.
#[utoipa::path(get, path = "/api/v1/stats/slow", params(StatsParams), responses(
    (status = 200, description = "routes with requests and links", body = serde_json::Value),
    super::openapi::ReadErrors,
))]
pub async fn slow(
    State(state): State<AppState>,
    params: Result<Query<StatsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    super::not_in_query_mode(&state, "the slowest requests")?;
    let (from, to) = range(&p)?;
    let (n, per_route) = (p.n.unwrap_or(10), p.requests.unwrap_or(5));
    if !(1..=100).contains(&n) || !(1..=100).contains(&per_route) {
        return Err(bad("invalid_limit", "`n` and `requests` must be from 1 to 100".into()));
    }
    let r = MinuteRange::covering(from, to);
    let report = state.stats.report(r, &filter(&p), GroupBy::Route);
    let routes: Vec<Group> = sorted(report.groups, |s| s.p99_ms.unwrap_or(-1.0))
        .into_iter()
        .filter(|g| g.summary.timed_count > 0)
        .take(n)
        .collect();
    let catalog = state.catalog.clone();
    let listed = blocking(move || {
        let mut out = Vec::with_capacity(routes.len());
        for g in routes {
            let q = format!("route:\"{}\"", g.key.replace('\\', "\\\\").replace('"', "\\\""));
            let req = SearchRequest {
                query: q.clone(),
                from_ms: Some(r.from_ms),
                to_ms: Some(r.to_ms),
                limit: per_route,
                sort: Sort::Slowest,
                cursor: None,
            };
            let requests: Vec<serde_json::Value> = catalog
                .search(&req)?
                .hits
                .into_iter()
                .map(|h| {
                    let id = h["id"].as_str().unwrap_or_default().to_string();
                    json!({
                        "id": id,
                        "timestamp_ms": h["timestamp_ms"],
                        "method": h["method"],
                        "path": h["path"],
                        "status": h["status"],
                        "duration_ms": h["duration_ms"],
                        "client_ip": h["client_ip"],
                        "context": format!("/api/v1/events/{}/context", encode(&id)),
                    })
                })
                .collect();
            let search = format!(
                "/api/v1/search?q={}&from={}&to={}&sort=duration_ms",
                encode(&q),
                r.from_ms / 1000,
                r.to_ms / 1000
            );
            out.push(json!({"route": g.key, "stats": g.summary, "requests": requests, "search": search}));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({"from": r.from_ms, "to": r.to_ms, "routes": listed})).into_response())
}

/// Percent-encodes everything but unreserved characters, for links.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
