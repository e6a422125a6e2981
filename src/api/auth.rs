//! Bearer tokens with roles. Tokens are kept only as SHA-256 digests and compared in constant
//! time over every configured token, so neither timing nor a memory dump gives one away; they
//! are never logged.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

pub use crate::config::Role;

struct Token {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens the API accepts.
pub struct Auth {
    tokens: Vec<Token>,
}

/// The caller, as the auth layer identified it, for handlers and rate limits.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// `tokens` are (name, role, secret).
    pub fn new(tokens: Vec<(String, Role, String)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(name, role, secret)| Token { name, role, digest: digest(&secret) })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller a presented token belongs to. Every token is compared, match or not.
    fn identify(&self, presented: &str) -> Option<Caller> {
        let d = digest(presented);
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(&t.digest, &d) && found.is_none() {
                found = Some(Caller { name: t.name.clone(), role: t.role });
            }
        }
        found
    }
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    let mut resp = ApiError::Unauthorized { code, message: message.to_string() }.into_response();
    let challenge = if code == "missing_token" {
        "Bearer realm=\"logwarden\""
    } else {
        "Bearer realm=\"logwarden\", error=\"invalid_token\""
    };
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

async fn require(role: Role, state: AppState, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return unauthorized("missing_token", "this endpoint needs `Authorization: Bearer <token>`");
    };
    let Some(caller) = state.auth.identify(presented) else {
        return unauthorized("invalid_token", "the token is not valid");
    };
    if let Err(retry_after) = state.limiter.admit(&caller.name) {
        let mut resp = ApiError::TooManyRequests(format!(
            "token `{}` is over its rate limit of {} requests a minute",
            caller.name,
            state.limiter.per_minute()
        ))
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        return resp;
    }
    if caller.role < role {
        return ApiError::Forbidden(format!("token `{}` has the read role; this endpoint needs admin", caller.name))
            .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Layer for endpoints any valid token may call.
pub async fn require_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    require(Role::Read, state, req, next).await
}

/// Layer for endpoints that need an admin token.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    require(Role::Admin, state, req, next).await
}

/// A token bucket per caller: `per_minute` requests a minute, in bursts of up to that many.
pub struct RateLimiter {
    per_minute: u32,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: std::sync::Mutex::default() }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one request from `caller`'s bucket, or says in how many seconds one is available.
    pub fn admit(&self, caller: &str) -> Result<(), u64> {
        let rate = f64::from(self.per_minute) / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = std::time::Instant::now();
        let (tokens, last) = buckets.entry(caller.to_string()).or_insert((f64::from(self.per_minute), now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(f64::from(self.per_minute));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_per_caller() {
        let l = RateLimiter::new(3);
        assert!((0..3).all(|_| l.admit("a").is_ok()));
        let wait = l.admit("a").expect_err("the fourth request in a burst of three");
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(l.admit("b").is_ok(), "callers have their own buckets");
    }

    #[test]
    fn tokens_identify_their_caller() {
        let auth = Auth::new(vec![
            ("ops".into(), Role::Admin, "s3cret-a".into()),
            ("grafana".into(), Role::Read, "s3cret-r".into()),
        ]);
        assert_eq!(auth.identify("s3cret-r").map(|c| (c.name, c.role)), Some(("grafana".to_string(), Role::Read)));
        assert_eq!(auth.identify("s3cret-a").map(|c| c.role), Some(Role::Admin));
        assert!(auth.identify("s3cret").is_none());
        assert!(auth.identify("").is_none());
    }
}
