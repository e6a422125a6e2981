//! `/api/v1/tail`: new matching events as server-sent events, for the dashboard's live view.
//!
//! A task pages forward in time with the search cursor once a second and sends each new hit
//! as one `data:` line; it stops when the client goes away or after `max_seconds`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, AppState, time_param};
use crate::index::now_ms;
use crate::index::search::{Cursor, SearchRequest, Sort};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TailParams {
    /// Only the events matching this query.
    q: Option<String>,
    /// Start here (default: now, only new events).
    since: Option<String>,
    /// End the stream after this many seconds (default 300, at most 3600).
    max_seconds: Option<u64>,
}

/// New matching events, oldest first, as `text/event-stream`.
#[utoipa::path(get, path = "/api/v1/tail", params(TailParams), responses(
    (status = 200, description = "one `data:` line of event JSON per new matching event", content_type = "text/event-stream", body = String),
    super::openapi::ReadErrors,
))]
pub async fn tail(
    State(state): State<AppState>,
    params: Result<Query<TailParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    super::not_in_query_mode(&state, "live tail")?;
    let since = time_param("since", p.since.as_deref())?.unwrap_or_else(now_ms);
    let max = p.max_seconds.unwrap_or(300);
    if !(1..=3600).contains(&max) {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            message: format!("`max_seconds` must be from 1 to 3600, got {max}"),
        });
    }
    let query = p.q.unwrap_or_default();
    // Check the query before streaming, so a bad one is a 400 and not a silent stream.
    let probe = SearchRequest { query: query.clone(), limit: 1, ..Default::default() };
    state.catalog.check_query(&probe)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(256);
    let catalog = state.catalog.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(max);
        let mut cursor: Option<Cursor> = None;
        while tokio::time::Instant::now() < deadline && !tx.is_closed() {
            let req = SearchRequest {
                query: query.clone(),
                from_ms: Some(since),
                to_ms: None,
                limit: 500,
                sort: Sort::Oldest,
                cursor: cursor.clone(),
            };
            let c = catalog.clone();
            let Ok(Ok(result)) = tokio::task::spawn_blocking(move || c.search(&req)).await else { break };
            for hit in &result.hits {
                if tx.send(Ok(Event::default().data(hit.to_string()))).await.is_err() {
                    return;
                }
            }
            if let Some(next) = Cursor::following(cursor.as_ref(), &result.hits) {
                cursor = Some(next);
            }
            if result.hits.len() < 500 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response())
}
