//! HTTPS awareness: whether a request came over HTTPS (native TLS, or a trusted proxy's
//! `X-Forwarded-Proto`), Strict-Transport-Security on those responses, and in production mode
//! a 301 to the https URL for everything else but `/health`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

pub const HSTS: &str = "max-age=31536000; includeSubDomains; preload";

/// Marks requests that arrived on the TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls;

/// An address block: `10.0.0.0/8`, `::1`, `192.0.2.7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net: addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - self.bits) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - self.bits) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// How the API treats plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct HttpsPolicy {
    pub production: bool,
    /// The port of the native TLS listener, for redirect URLs.
    pub tls_port: Option<u16>,
    pub trusted_proxies: Vec<Cidr>,
}

impl HttpsPolicy {
    fn trusted(&self, req: &Request) -> bool {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| self.trusted_proxies.iter().any(|c| c.contains(peer.ip())))
    }
}

fn header_str<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or("").trim())
}

/// The https URL of a request, for the redirect.
fn https_url(req: &Request, policy: &HttpsPolicy, trusted: bool) -> Option<String> {
    let host = trusted
        .then(|| header_str(req, "x-forwarded-host"))
        .flatten()
        .or_else(|| header_str(req, "host"))
        .or_else(|| req.uri().host())?;
    // Only a host name or address, never a path or credentials smuggled into the header.
    if host.is_empty() || host.contains(['/', '@', '\\', ' ']) {
        return None;
    }
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let authority = match policy.tls_port {
        Some(443) | None => bare.to_string(),
        Some(p) => format!("{bare}:{p}"),
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Some(format!("https://{authority}{path}"))
}

pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let policy = &state.https;
    let trusted = policy.trusted(&req);
    let https = req.extensions().get::<Tls>().is_some()
        || (trusted && header_str(&req, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https")));
    if policy.production && !https && req.uri().path() != "/health" {
        return match https_url(&req, policy, trusted) {
            Some(url) => match HeaderValue::from_str(&url) {
                Ok(location) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response(),
                Err(_) => StatusCode::BAD_REQUEST.into_response(),
            },
            None => super::ApiError::BadRequest {
                code: "https_required",
                message: "this API is served over HTTPS only; the request had no usable Host header".into(),
            }
            .into_response(),
        };
    }
    let mut resp = next.run(req).await;
    if https {
        resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.200.1.2".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()), "v4-mapped peers");
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("proxy").is_none());
    }
}
