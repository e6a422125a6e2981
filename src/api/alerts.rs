//! `/api/v1/alerts` and `/api/v1/security-report`.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, range_request};
use crate::index::now_ms;

/// Rules, current instances, recent transitions and what waits in the outbox.
/// Alert rules, pending and firing alerts, recent transitions and the outbox.
#[utoipa::path(get, path = "/api/v1/alerts", responses(
    (status = 200, description = "rules, alerts, history, outbox", body = serde_json::Value),
    super::openapi::ReadErrors,
))]
pub async fn alerts(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.alerts else {
        return Ok(
            Json(json!({"enabled": false, "rules": [], "alerts": [], "history": [], "outbox": []})).into_response()
        );
    };
    let rules = handle.rules.read().map_err(|e| ApiError::Internal(e.to_string()))?.clone();
    let s = handle.state.lock().map_err(|e| ApiError::Internal(e.to_string()))?;
    let outbox: Vec<Value> = s
        .outbox
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "receiver": handle.receivers.get(p.receiver),
                "attempts": p.attempts,
                "next_attempt_ms": p.next_attempt_ms,
                "last_error": p.last_error,
            })
        })
        .collect();
    let mut history = s.history.clone();
    history.reverse();
    Ok(Json(json!({
        "enabled": true,
        "rules": rules,
        "alerts": s.instances.values().collect::<Vec<_>>(),
        "history": history,
        "outbox": outbox,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    n: Option<usize>,
}

/// Anomalies by severity over a range, a verdict, the top offenders and what to do.
/// Anomalies by severity, a verdict, top offenders and recommendations.
#[utoipa::path(get, path = "/api/v1/security-report", params(ReportParams), responses(
    (status = 200, description = "the report", body = serde_json::Value),
    super::openapi::ReadErrors,
))]
pub async fn security_report(
    State(state): State<AppState>,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let n = p.n.unwrap_or(10);
    if !(1..=100).contains(&n) {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            message: format!("`n` must be from 1 to 100, got {n}"),
        });
    }
    let mut req = range_request(Some("anomaly_score:>0".into()), p.from.as_deref(), p.to.as_deref())?;
    let to = req.to_ms.unwrap_or_else(now_ms);
    let from = req.from_ms.unwrap_or(to - 24 * 3_600_000);
    if from >= to {
        return Err(ApiError::BadRequest { code: "invalid_time", message: "`from` must be before `to`".into() });
    }
    (req.from_ms, req.to_ms) = (Some(from), Some(to));
    let (catalog, fleet) = (state.catalog.clone(), state.fleet.clone());
    let report = tokio::task::spawn_blocking(move || -> Result<Value, crate::index::search::SearchError> {
        // Severity counts and the top lists, from the agents' ClickHouse or the local index.
        let (severities, [clients, routes, rules, families]) = match fleet {
            Some(f) => f.security(from, to, n)?,
            None => {
                let severities: Vec<(String, u64)> = catalog
                    .top_values("severity", &req, 10)?
                    .into_iter()
                    .map(|(v, c)| (v.as_str().unwrap_or_default().to_string(), c))
                    .collect();
                let top = |field: &str| -> Result<Vec<Value>, crate::index::search::SearchError> {
                    Ok(catalog.top_values(field, &req, n)?.into_iter().map(|(v, c)| json!({"value": v, "count": c})).collect())
                };
                (severities, [top("client_ip")?, top("route")?, top("anomalies")?, top("family")?])
            }
        };
        let count = |name: &str| severities.iter().find(|(v, _)| v == name).map_or(0, |(_, c)| *c);
        let (critical, high, moderate, low) = (count("CRITICAL"), count("HIGH"), count("MODERATE"), count("LOW"));
        let status = if critical > 0 {
            "FAILED"
        } else if high + moderate > 0 {
            "WARNING"
        } else {
            "PASSED"
        };
        let mut advice = Vec::new();
        if critical > 0 {
            advice.push(format!(
                "{critical} requests matched CRITICAL rules: look at the top clients below, block them at the edge, and check the targeted routes' logs for a successful response (status 2xx) to the same requests."
            ));
        }
        for f in &families {
            let text = match f["value"].as_str().unwrap_or_default() {
                "sqli" => "SQL injection attempts: make sure every query on the targeted routes is parameterised; a WAF rule set (OWASP CRS) in front catches most of these.",
                "xss" => "Cross-site scripting attempts: encode output on the targeted pages and keep a strict Content-Security-Policy.",
                "cmdi" => "Command injection attempts: never pass request values to a shell; check the targeted endpoints for calls to system() or exec.",
                "traversal" => "Path traversal attempts: resolve requested paths against a fixed root and refuse `..`; check which files the 2xx responses served.",
                "scanner" => "Vulnerability scanners are probing the site: rate-limit or block their clients; keep admin paths off the public listener.",
                "protocol" | "headers" => "Malformed or forged headers: only trust X-Forwarded-* from your own proxies.",
                _ => continue,
            };
            advice.push(text.to_string());
        }
        if advice.is_empty() {
            advice.push("No anomalies in this range.".into());
        }
        Ok(json!({
            "from": from,
            "to": to,
            "status": status,
            "severity": {"critical": critical, "high": high, "moderate": moderate, "low": low},
            "events": critical + high + moderate + low,
            "top_clients": clients,
            "top_routes": routes,
            "top_rules": rules,
            "families": families,
            "recommendations": advice,
        }))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(report).into_response())
}
