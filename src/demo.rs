//! A built-in traffic generator: realistic nginx combined lines with request times, slow
//! requests, errors, a few attacks and planted secrets. It feeds `logwarden demo` and the
//! benchmarks, and is deterministic for a given seed.

use crate::parse::timestamp::civil_from_days;

/// A small xorshift generator: deterministic, fast, and enough for synthetic traffic.
#[derive(Debug, Clone)]
pub struct TrafficGenerator {
    state: u64,
    seq: u64,
}

const ROUTES: &[&str] = &[
    "/",
    "/api/users/{id}",
    "/api/orders/{id}",
    "/api/orders",
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/search?q=shoes&page={id}",
    "/login",
    "/account/settings",
    "/api/auth/refresh",
    "/blog/2025-11-25/launch",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "okhttp/4.12.0",
];
const ATTACKS: &[(&str, &str)] = &[
    ("GET", "/api/products?id=1%27%20OR%20%271%27=%271"),
    ("GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"),
    ("GET", "/download?file=../../../../etc/passwd"),
    ("GET", "/api/ping?host=127.0.0.1;cat%20/etc/shadow"),
    ("GET", "/wp-login.php"),
    ("GET", "/.env"),
];
const SECRETS: &[&str] = &[
    "/login?user=alice&password=Tr0ub4dor%263",
    "/api/pay?card=4111-1111-1111-1111&amount=12",
    "/api/verify?ssn=078-05-1120",
    "/api/session?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    "/api/keys?api_key=AKIAIOSFODNN7EXAMPLE",
];

impl TrafficGenerator {
    pub fn new(seed: u64) -> Self {
        Self { state: seed.max(1), seq: 0 }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// One combined log line (no newline) at `timestamp_ms`, with `$request_time` at the end.
    pub fn line(&mut self, timestamp_ms: i64) -> String {
        self.seq += 1;
        let roll = self.below(1000);
        let client = format!("203.0.113.{}", 1 + self.below(60));
        let ua = self.pick(AGENTS).to_string();
        let (method, target, status, secs) = if roll < 30 {
            let (m, t) = ATTACKS[self.below(ATTACKS.len() as u64) as usize];
            let ua = if self.below(2) == 0 { "sqlmap/1.7.2#stable (https://sqlmap.org)" } else { "Nikto/2.5.0" };
            return self.format(timestamp_ms, "198.51.100.66", m, t, 404, 0.004, ua);
        } else if roll < 50 {
            ("GET", self.pick(SECRETS).to_string(), 200, 0.040)
        } else if roll < 100 {
            let route = self.pick(ROUTES).replace("{id}", &self.below(5000).to_string());
            ("POST", route, [500u16, 502, 503, 504][self.below(4) as usize], 0.010 + self.below(300) as f64 / 1000.0)
        } else if roll < 150 {
            let route = self.pick(ROUTES).replace("{id}", &self.below(5000).to_string());
            ("GET", route, 200, 1.0 + self.below(4000) as f64 / 1000.0)
        } else {
            let route = self.pick(ROUTES).replace("{id}", &self.below(5000).to_string());
            let method = if self.below(5) == 0 { "POST" } else { "GET" };
            let status = [200u16, 200, 200, 201, 304, 404][self.below(6) as usize];
            (method, route, status, 0.003 + self.below(150) as f64 / 1000.0)
        };
        self.format(timestamp_ms, &client, method, &target, status, secs, &ua)
    }

    #[allow(clippy::too_many_arguments)]
    fn format(
        &mut self,
        ts: i64,
        client: &str,
        method: &str,
        target: &str,
        status: u16,
        secs: f64,
        ua: &str,
    ) -> String {
        let bytes = if status == 304 { 0 } else { 200 + self.below(20_000) };
        format!(
            "{client} - - [{}] \"{method} {target} HTTP/1.1\" {status} {bytes} \"-\" \"{ua}\" {secs:.3}",
            clf_time(ts)
        )
    }
}

/// `10/Oct/2000:13:55:36 +0000`.
pub fn clf_time(ms: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000", MONTHS[m as usize - 1], sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::parse::{FileParser, FormatSpec, Kind};

    #[test]
    fn generated_lines_parse_and_carry_timings() {
        let mut g = TrafficGenerator::new(7);
        let mut p = FileParser::new(FormatSpec::Fixed(Kind::Combined));
        let mut slow = 0;
        for i in 0..2000 {
            let line = g.line(1_764_000_000_000 + i);
            let mut ev = Event::default();
            p.parse(&line, &mut ev).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(ev.duration_ms.is_some());
            assert_eq!(ev.timestamp_ms, (1_764_000_000_000 + i) / 1000 * 1000);
            slow += usize::from(ev.duration_ms.unwrap() >= 1000.0);
        }
        assert!(slow > 20, "slow requests are generated ({slow})");
    }

    #[test]
    fn same_seed_same_traffic() {
        assert_eq!(TrafficGenerator::new(3).line(0), TrafficGenerator::new(3).line(0));
    }
}
