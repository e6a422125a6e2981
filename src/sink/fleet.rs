//! Query mode: search, statistics, timeseries and the security report answered from the
//! ClickHouse table the agents fill, in the same shapes the local index gives them.
//!
//! Duplicates a retry may have inserted are collapsed with `FINAL`; percentiles are
//! ClickHouse's exact ones (`quantilesExact`), the figures HdrHistogram approximates locally.

use serde_json::{Value, json};

use super::ClickHouse;
use super::sql::{condition, quote};
use crate::config::ClickHouseConfig;
use crate::index::search::{Cursor, SearchError, SearchRequest, SearchResult, Sort};
use crate::stats::{Group, Report, Series, Summary, Thresholds};

/// Events per severity, and the top clients, routes, rules and families.
pub type SecurityCounts = (Vec<(String, u64)>, [Vec<Value>; 4]);

pub struct Fleet {
    ch: ClickHouse,
    table: String,
    thresholds: Thresholds,
}

/// What stats may be grouped by in query mode: the local groupings and `agent`.
pub fn group_expr(group_by: &str) -> Option<&'static str> {
    Some(match group_by {
        "" | "route" => "route",
        "status" => "toString(status)",
        "status_class" => {
            "multiIf(status >= 100 AND status < 600, concat(toString(intDiv(status, 100)), 'xx'), 'none')"
        }
        "method" => "method",
        "host" => "host",
        "agent" => "agent",
        "none" => "''",
        _ => return None,
    })
}

/// Filters on the stats parameters: route, method, status (code or class), host, agent.
#[derive(Debug, Clone, Default)]
pub struct FleetFilter {
    pub route: Option<String>,
    pub method: Option<String>,
    pub status: Option<String>,
    pub host: Option<String>,
    pub agent: Option<String>,
}

impl FleetFilter {
    fn sql(&self) -> Result<String, SearchError> {
        let mut parts = Vec::new();
        for (col, v) in [("route", &self.route), ("host", &self.host), ("agent", &self.agent)] {
            if let Some(v) = v {
                parts.push(format!("{col} = {}", quote(v)));
            }
        }
        if let Some(m) = &self.method {
            parts.push(format!("upper(method) = {}", quote(&m.to_ascii_uppercase())));
        }
        if let Some(s) = &self.status {
            let class = s.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok());
            match (class, s.parse::<u16>()) {
                (Some(c), _) => parts.push(format!("intDiv(status, 100) = {c}")),
                (None, Ok(code)) => parts.push(format!("status = {code}")),
                _ => return Err(SearchError::Query(format!("`status` is a code or a class like 5xx, got {s:?}"))),
            }
        }
        Ok(if parts.is_empty() { "1".into() } else { parts.join(" AND ") })
    }
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn us(ms: f64) -> u64 {
    (ms * 1000.0).round().max(0.0) as u64
}

impl Fleet {
    pub fn new(cfg: &ClickHouseConfig, thresholds: Thresholds) -> Self {
        Self { ch: ClickHouse::new(cfg), table: format!("{}.{}", cfg.database, cfg.table), thresholds }
    }

    fn rows(&self, sql: &str) -> Result<Vec<Value>, SearchError> {
        let text = self
            .ch
            .query(
                &format!("{sql} FORMAT JSONEachRow SETTINGS output_format_json_quote_64bit_integers = 0"),
                Vec::new(),
                false,
            )
            .or_else(|_| self.ch.query(&format!("{sql} FORMAT JSONEachRow"), Vec::new(), false))
            .map_err(SearchError::Backend)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| SearchError::Backend(format!("unreadable ClickHouse row: {e}")))
            })
            .collect()
    }

    /// The time range (ms, `[from, to)`) as a condition that also prunes partitions.
    fn range(from_ms: Option<i64>, to_ms: Option<i64>) -> String {
        let mut parts = vec!["1".to_string()];
        if let Some(f) = from_ms {
            parts.push(format!("ts >= toDateTime({}) AND toUInt64(ts) * 1000 + ts_ms >= {f}", f.div_euclid(1000)));
        }
        if let Some(t) = to_ms {
            parts.push(format!("ts <= toDateTime({}) AND toUInt64(ts) * 1000 + ts_ms < {t}", t.div_euclid(1000)));
        }
        parts.join(" AND ")
    }

    pub fn search(&self, req: &SearchRequest) -> Result<SearchResult, SearchError> {
        let started = std::time::Instant::now();
        let limit = req.limit.clamp(1, crate::index::search::MAX_LIMIT);
        let cond = condition(&req.query).map_err(SearchError::Query)?;
        let base = format!("{} AND ({cond})", Self::range(req.from_ms, req.to_ms));
        let total = self
            .rows(&format!("SELECT count() AS n FROM {} FINAL WHERE {base}", self.table))?
            .first()
            .map_or(0.0, |r| num(&r["n"])) as u64;
        let mut page = base.clone();
        if let Some(c) = &req.cursor {
            let at = "toUInt64(ts) * 1000 + ts_ms";
            page.push_str(&match req.sort {
                Sort::Newest => format!(" AND {at} <= {}", c.ts()),
                _ => format!(" AND {at} >= {}", c.ts()),
            });
            if !c.ids().is_empty() {
                let ids: Vec<String> = c.ids().iter().map(|i| quote(i)).collect();
                page.push_str(&format!(" AND id NOT IN ({})", ids.join(", ")));
            }
        }
        let order = match req.sort {
            Sort::Newest => "ts DESC, ts_ms DESC, id DESC",
            Sort::Oldest => "ts ASC, ts_ms ASC, id ASC",
            Sort::Slowest => "duration_ms DESC, ts DESC",
        };
        let hits: Vec<Value> = self
            .rows(&format!("SELECT event FROM {} FINAL WHERE {page} ORDER BY {order} LIMIT {limit}", self.table))?
            .into_iter()
            .filter_map(|r| serde_json::from_str(r["event"].as_str()?).ok())
            .collect();
        let next_cursor = (hits.len() == limit && req.sort != Sort::Slowest)
            .then(|| Cursor::following(req.cursor.as_ref(), &hits).map(|c| c.encode()))
            .flatten();
        Ok(SearchResult { total, hits, next_cursor, took_ms: started.elapsed().as_secs_f64() * 1000.0 })
    }

    /// Per-group and total figures over `[from, to)` of the events matching `q` and `filter`.
    pub fn report(
        &self,
        from_ms: i64,
        to_ms: i64,
        q: &str,
        filter: &FleetFilter,
        group_by: &str,
    ) -> Result<Report, SearchError> {
        let key = group_expr(group_by).ok_or_else(|| SearchError::Query(format!("cannot group by {group_by:?}")))?;
        let cond = condition(q).map_err(SearchError::Query)?;
        let wher = format!(
            "{} AND ({cond}) AND ({}) AND (route != '' OR status != 0 OR duration_ms IS NOT NULL)",
            Self::range(Some(from_ms), Some(to_ms)),
            filter.sql()?
        );
        let t = &self.thresholds;
        let slow = {
            let by: Vec<String> =
                t.slow_overrides().map(|(r, us)| format!("route = {}, {}", quote(r), us as f64 / 1000.0)).collect();
            if by.is_empty() {
                format!("{}", t.default_slow_us() as f64 / 1000.0)
            } else {
                format!("multiIf({}, {})", by.join(", "), t.default_slow_us() as f64 / 1000.0)
            }
        };
        let apdex = t.apdex_us() as f64 / 1000.0;
        let figures = format!(
            "count() AS n, count(duration_ms) AS timed, sum(duration_ms) AS sum_ms, max(duration_ms) AS max_ms,
             arrayMap(x -> if(isFinite(x), x, 0), quantilesExact(0.5, 0.9, 0.95, 0.99, 0.999)(duration_ms)) AS q,
             countIf(status >= 500 AND status < 600) AS e5, countIf(status >= 400 AND status < 500) AS e4,
             countIf(ifNull(duration_ms > {slow}, 0)) AS slow, countIf(ifNull(duration_ms <= {apdex}, 0)) AS sat,
             countIf(ifNull(duration_ms > {apdex} AND duration_ms <= {}, 0)) AS tol",
            apdex * 4.0
        );
        let seconds = (to_ms - from_ms) as f64 / 1000.0;
        let summary = |r: &Value| {
            let timed = num(&r["timed"]) as u64;
            let series = Series {
                count: num(&r["n"]) as u64,
                server_errors: num(&r["e5"]) as u64,
                client_errors: num(&r["e4"]) as u64,
                timed,
                sum_us: us(num(&r["sum_ms"])),
                max_us: us(num(&r["max_ms"])),
                slow: num(&r["slow"]) as u64,
                satisfied: num(&r["sat"]) as u64,
                tolerating: num(&r["tol"]) as u64,
                ..Series::default()
            };
            let qs = (timed > 0).then(|| r["q"].as_array().map(|a| a.iter().map(|v| us(num(v))).collect())).flatten();
            Summary::with_quantiles(&[&series], seconds, qs)
        };
        let groups = if group_by == "none" {
            Vec::new()
        } else {
            self.rows(&format!("SELECT {key} AS k, {figures} FROM {} FINAL WHERE {wher} GROUP BY k", self.table))?
                .iter()
                .map(|r| Group {
                    key: r["k"].as_str().map_or_else(|| r["k"].to_string(), str::to_string),
                    summary: summary(r),
                })
                .collect()
        };
        let total = self.rows(&format!("SELECT {figures} FROM {} FINAL WHERE {wher}", self.table))?;
        Ok(Report { groups, total: summary(total.first().unwrap_or(&Value::Null)) })
    }

    /// The total figures per `interval_ms` step from `from_ms` (aligned) to `to_ms`.
    pub fn timeseries(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
        q: &str,
        filter: &FleetFilter,
    ) -> Result<Vec<(i64, Summary)>, SearchError> {
        let mut out = Vec::new();
        let mut t = from_ms;
        // One query per step keeps the figures identical to `/stats` over that step.
        while t < to_ms {
            out.push((t, self.report(t, t + interval_ms, q, filter, "none")?.total));
            t += interval_ms;
        }
        Ok(out)
    }

    /// Counts by severity and the top clients, routes, rules and families of anomalous events.
    pub fn security(&self, from_ms: i64, to_ms: i64, n: usize) -> Result<SecurityCounts, SearchError> {
        let wher = format!("{} AND anomaly_score > 0", Self::range(Some(from_ms), Some(to_ms)));
        let t = &self.table;
        let pairs = |sql: String| -> Result<Vec<(String, u64)>, SearchError> {
            Ok(self
                .rows(&sql)?
                .iter()
                .map(|r| (r["v"].as_str().unwrap_or_default().to_string(), num(&r["c"]) as u64))
                .collect())
        };
        let top = |expr: &str| -> Result<Vec<Value>, SearchError> {
            Ok(pairs(format!(
                "SELECT {expr} AS v, count() AS c FROM {t} FINAL WHERE {wher} GROUP BY v ORDER BY c DESC, v LIMIT {n}"
            ))?
            .into_iter()
            .map(|(v, c)| json!({"value": v, "count": c}))
            .collect())
        };
        let severities = pairs(format!("SELECT severity AS v, count() AS c FROM {t} FINAL WHERE {wher} GROUP BY v"))?;
        Ok((severities, [top("client_ip")?, top("route")?, top("arrayJoin(anomalies)")?, top("arrayJoin(families)")?]))
    }
}
