//! `GET /api/v1/search/export`: every match of a search, streamed as NDJSON or CSV without a
//! size limit. The index is read on a blocking thread that hands lines over a bounded channel,
//! so a slow client slows the read instead of filling memory, and a client that goes away
//! stops it.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState, range_request};
use crate::parse::timestamp::format_rfc3339;

/// Lines in flight between the index reader and the client.
const IN_FLIGHT: usize = 64;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// `ndjson` (default) or `csv`.
    format: Option<String>,
}

/// CSV columns, in order.
const CSV_COLUMNS: &[&str] = &[
    "timestamp",
    "status",
    "method",
    "path",
    "route",
    "query",
    "duration_ms",
    "bytes_sent",
    "client_ip",
    "user_agent",
    "referer",
    "request_id",
    "attack",
    "anomalies",
    "parse_error",
];

/// One CSV cell: quoted when needed, and defused when a spreadsheet would run it as a formula.
fn csv_cell(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    };
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn csv_line(hit: &serde_json::Value) -> String {
    let mut cells: Vec<String> = Vec::with_capacity(CSV_COLUMNS.len());
    for col in CSV_COLUMNS {
        let v = match *col {
            "timestamp" => hit
                .get("timestamp_ms")
                .and_then(|t| t.as_i64())
                .map_or(serde_json::Value::Null, |t| format_rfc3339(t).into()),
            name => hit.get(name).cloned().unwrap_or(serde_json::Value::Null),
        };
        cells.push(csv_cell(&v));
    }
    let mut line = cells.join(",");
    line.push_str("\r\n");
    line
}

/// Every matching event, streamed without a size limit.
#[utoipa::path(get, path = "/api/v1/search/export", params(ExportParams), responses(
    (status = 200, description = "one event per line", content(
        (String = "application/x-ndjson"),
        (String = "text/csv"),
    )),
    super::openapi::ReadErrors,
))]
pub async fn export(
    State(state): State<AppState>,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    super::not_in_query_mode(&state, "export")?;
    let csv = match p.format.as_deref().unwrap_or("ndjson") {
        "ndjson" | "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::BadRequest {
                code: "invalid_format",
                message: format!("`format` must be ndjson or csv, got {other:?}"),
            });
        }
    };
    let req = range_request(p.q, p.from.as_deref(), p.to.as_deref())?;
    state.catalog.check_query(&req)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(IN_FLIGHT);
    let catalog = state.catalog.clone();
    tokio::task::spawn_blocking(move || {
        if csv && tx.blocking_send(Ok(Bytes::from(format!("{}\r\n", CSV_COLUMNS.join(","))))).is_err() {
            return;
        }
        let result = catalog.export(&req, |hit| {
            let line = if csv { csv_line(&hit) } else { format!("{hit}\n") };
            tx.blocking_send(Ok(Bytes::from(line))).is_ok()
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "export failed");
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let (content_type, name) =
        if csv { ("text/csv; charset=utf-8", "events.csv") } else { ("application/x-ndjson", "events.ndjson") };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell(&"plain".into()), "plain");
        assert_eq!(csv_cell(&"a,b".into()), "\"a,b\"");
        assert_eq!(csv_cell(&"say \"hi\"".into()), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell(&"=HYPERLINK(\"x\")".into()), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell(&serde_json::json!(404)), "404");
        assert_eq!(csv_cell(&serde_json::Value::Null), "");
    }
}
