//! The HTTP API. `router(state)` is what the daemon serves and what tests call directly.
//! Every error has one shape, `{"error": {"code", "message"}}`: a clear message and a 4xx for
//! the client's mistakes, a generic message and a 500 for ours (the detail goes to our log).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::index::search::{MAX_LIMIT, SearchError, SearchRequest};
use crate::index::{Catalog, now_ms};
use crate::metrics::IngestCounters;
use crate::parse::timestamp::parse_any;

#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub counters: Arc<IngestCounters>,
}

pub fn router(state: AppState) -> Router {
    Router::new().route("/health", get(health)).route("/api/v1/search", get(search)).with_state(state)
}

/// Every error the API returns.
#[derive(Debug)]
pub enum ApiError {
    BadRequest { code: &'static str, message: String },
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error, see the daemon's log".to_string())
            }
        };
        (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Query(m) => ApiError::BadRequest { code: "invalid_query", message: m },
            SearchError::Internal(e) => ApiError::Internal(e.to_string()),
        }
    }
}

async fn health(State(state): State<AppState>) -> Response {
    let c = &state.counters;
    let failed = c.failed.load(Ordering::Relaxed);
    let body = json!({
        "status": if failed { "failing" } else { "ok" },
        "events_indexed": IngestCounters::get(&c.events_indexed),
        "parse_errors": IngestCounters::get(&c.parse_errors),
        "skipped": IngestCounters::get(&c.skipped),
        "attacks": IngestCounters::get(&c.attacks),
        "last_commit_ms": c.last_commit_ms.load(Ordering::Relaxed),
        "sources": c.per_source.lock().map(|m| json!(*m)).unwrap_or(serde_json::Value::Null),
    });
    let status = if failed { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

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

async fn search(State(state): State<AppState>, Query(p): Query<SearchParams>) -> Result<Response, ApiError> {
    let from_ms = time_param("from", p.from.as_deref())?;
    let to_ms = time_param("to", p.to.as_deref())?;
    let limit = match p.limit.as_deref().filter(|l| !l.is_empty()) {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest {
                    code: "invalid_limit",
                    message: format!("`limit` must be a number from 1 to {MAX_LIMIT}, got {l:?}"),
                });
            }
        },
    };
    let req = SearchRequest { query: p.q.unwrap_or_default(), from_ms, to_ms, limit };
    let catalog = state.catalog.clone();
    let result = tokio::task::spawn_blocking(move || catalog.search(&req))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(result).into_response())
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
