//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! parameter and response types themselves, served at `/api/v1/openapi.json`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::ErrorBody;

/// The errors every authenticated endpoint may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of responses, never constructed
pub enum ReadErrors {
    /// A parameter is wrong; the message says which and why.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or an unknown one (with `WWW-Authenticate`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token's role may not use this endpoint.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The token's rate limit is spent (with `Retry-After`).
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// A query node (run --role query) does not serve this endpoint.
    #[response(status = 501)]
    NotInThisMode(ErrorBody),
    /// The request took longer than `request_timeout`.
    #[response(status = 503)]
    Timeout,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logwarden",
        description = "Search, statistics, alerts and health of the logwarden daemon. Every endpoint but /health needs `Authorization: Bearer <token>`; every error is `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        super::health,
        super::search_get,
        super::search_post,
        super::export::export,
        super::context,
        super::top_values,
        super::stats::stats,
        super::stats::timeseries,
        super::stats::slow,
        super::alerts::alerts,
        super::tail::tail,
        super::alerts::security_report,
        super::metrics::metrics,
        super::metrics::health_detailed,
        document,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses(
    (status = 200, description = "the OpenAPI 3 document", body = serde_json::Value),
    ReadErrors,
))]
pub async fn document() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
