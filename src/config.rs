//! Configuration: the TOML file as written (`ConfigFile`, every key defaulted) and its
//! validation. The committed `logwarden.toml` is embedded as the default, so the documented
//! example and the behaviour with no file cannot drift apart.
//!
//! Precedence, lowest first: the file (or the embedded default), `LOGWARDEN_*` environment
//! variables (`LOGWARDEN_SECTION__KEY`), then command-line flags (applied by `cli`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::parse::{CustomFormat, FormatSpec, Kind};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../logwarden.toml");

/// A configuration that could not be loaded, naming the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}:{line}: key `{key}`: {message}")]
    Invalid { origin: String, line: usize, key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub data_dir: PathBuf,
    pub log_level: String,
    pub api: ApiConfig,
    pub sources: Vec<SourceConfig>,
    pub index: IndexConfig,
    pub redact: RedactConfig,
    pub filter: FilterConfig,
    pub rules: RulesConfig,
    pub stats: StatsConfig,
    pub alerts: AlertsConfig,
    pub clickhouse: ClickHouseConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// Ship every (redacted) event to ClickHouse.
    pub enabled: bool,
    /// The HTTP interface, such as `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub table: String,
    /// Environment variables holding the user and password (none: the default user).
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    #[serde(deserialize_with = "positive_usize")]
    pub batch_size: usize,
    #[serde(deserialize_with = "duration")]
    pub max_batch_delay: Duration,
    /// Unsent events kept on disk; beyond, reading the logs waits.
    #[serde(deserialize_with = "positive_u64")]
    pub spool_max_mb: u64,
    /// Gzip the inserts.
    pub compression: bool,
    /// This agent's name in the `agent` column (default: the host name).
    pub agent: Option<String>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "http://127.0.0.1:8123".into(),
            database: "logwarden".into(),
            table: "events".into(),
            user_env: None,
            password_env: None,
            batch_size: 10_000,
            max_batch_delay: Duration::from_secs(1),
            spool_max_mb: 1024,
            compression: true,
            agent: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// Alert rules (`[[alert]]` tables); the built-in `rules/alerts.toml` when absent.
    pub rules_file: Option<PathBuf>,
    #[serde(deserialize_with = "duration")]
    pub evaluation_interval: Duration,
    /// The base of the links in alerts (`generatorURL`, search links); `http://<api.listen>`
    /// when empty.
    pub external_url: String,
    /// Matching events (redacted) sent with a firing webhook notification.
    pub sample_events: usize,
    pub receivers: Vec<ReceiverConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_file: None,
            evaluation_interval: Duration::from_secs(15),
            external_url: String::new(),
            sample_events: 5,
            receivers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Prometheus Alertmanager's v2 API at `url` (its base, such as `http://127.0.0.1:9093`).
    Alertmanager,
    /// A POST of Alertmanager's webhook payload, with sample events, to `url`.
    Webhook,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub kind: ReceiverKind,
    pub url: String,
    /// A name for logs and `/api/v1/alerts`; the kind when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// An environment variable holding a bearer token to send.
    #[serde(default)]
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// A request slower than this is slow (counted, and logged at a limited rate).
    #[serde(deserialize_with = "positive_u64")]
    pub slow_request_ms: u64,
    /// Per-route slow thresholds, winning over `slow_request_ms`.
    pub slow_request_ms_by_route: BTreeMap<String, u64>,
    /// Apdex target T: satisfied up to T, tolerating up to 4T.
    #[serde(deserialize_with = "positive_u64")]
    pub apdex_target_ms: u64,
    /// Distinct routes kept apart; later ones are folded into `other`.
    #[serde(deserialize_with = "positive_usize")]
    pub max_routes: usize,
    /// Route templates (`/api/users/:id/orders`, `/static/*`), winning over the heuristics.
    pub routes: Vec<String>,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            slow_request_ms: 1000,
            slow_request_ms_by_route: BTreeMap::new(),
            apdex_target_ms: 500,
            max_routes: 2000,
            routes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub enabled: bool,
    /// Extra rule files (`*.toml`), added to the built-in pack and reloaded when they change.
    pub dir: Option<PathBuf>,
    /// An event whose anomaly score reaches this is an attack.
    #[serde(deserialize_with = "positive_u32")]
    pub anomaly_threshold: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self { enabled: true, dir: None, anomaly_threshold: 5 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Bearer tokens; `LOGWARDEN_API_TOKEN` adds one admin token.
    pub tokens: Vec<TokenConfig>,
    #[serde(deserialize_with = "positive_usize")]
    pub max_body_bytes: usize,
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    #[serde(deserialize_with = "positive_usize")]
    pub max_concurrent_requests: usize,
    /// Requests a minute each token may make (bursts up to the same number).
    #[serde(deserialize_with = "positive_u32")]
    pub rate_limit_per_minute: u32,
    /// Searches slower than this are logged with their duration.
    pub slow_query_ms: u64,
    /// With both, the API is served over TLS (rustls).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `production`: plain-HTTP requests are redirected to HTTPS (`/health` excepted).
    pub mode: ApiMode,
    /// A plain-HTTP listener that redirects to the HTTPS API (with TLS in production).
    pub redirect_listen: Option<SocketAddr>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-Proto` and `X-Forwarded-Host`
    /// are believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiMode {
    #[default]
    Development,
    Production,
}

/// What a token may do. `Admin` may do everything `Read` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Admin,
}

/// One API token. The secret itself lives in the environment, not in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    /// The environment variable holding the token.
    pub token_env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatName {
    Auto,
    Combined,
    Common,
    Json,
    Logfmt,
    Express,
    Alb,
    W3c,
    Haproxy,
    #[serde(rename = "error_log")]
    ErrorLog,
    Nginx,
    Apache,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub format: FormatName,
    pub log_format: Option<toml::Spanned<String>>,
    pub read_from: ReadFrom,
    #[serde(deserialize_with = "positive_usize")]
    pub max_line_bytes: usize,
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    #[serde(deserialize_with = "duration")]
    pub commit_interval: Duration,
    #[serde(deserialize_with = "positive_u32")]
    pub retention_days: u32,
    #[serde(deserialize_with = "positive_usize")]
    pub writer_memory_mb: usize,
    /// Below this much free space on the data directory's filesystem, ingestion pauses.
    pub min_free_mb: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactMode {
    Replace,
    Hash,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    pub extra_keys: Vec<String>,
    pub mode: RedactMode,
    pub hash_key_env: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub skip_health_checks: bool,
    pub health_paths: Vec<String>,
    pub skip_static_assets: bool,
    pub static_extensions: Vec<String>,
    pub skip: Vec<SkipRule>,
}

/// A user skip rule: every key given must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkipRule {
    pub path_prefix: Option<String>,
    pub method: Option<String>,
    pub status: Option<u16>,
    pub user_agent_contains: Option<String>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let dur = humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("invalid duration {s:?}: {e} (try \"250ms\", \"1s\", \"5m\")"))
    })?;
    if dur.is_zero() {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(dur)
}

fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(n)
}

fn positive_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(n)
}

fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(n)
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            log_level: "info".into(),
            api: ApiConfig::default(),
            sources: Vec::new(),
            index: IndexConfig::default(),
            redact: RedactConfig::default(),
            filter: FilterConfig::default(),
            rules: RulesConfig::default(),
            stats: StatsConfig::default(),
            alerts: AlertsConfig::default(),
            clickhouse: ClickHouseConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            tokens: Vec::new(),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 64,
            rate_limit_per_minute: 600,
            slow_query_ms: 500,
            tls_cert: None,
            tls_key: None,
            mode: ApiMode::Development,
            redirect_listen: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            format: FormatName::Auto,
            log_format: None,
            read_from: ReadFrom::End,
            max_line_bytes: 1024 * 1024,
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { commit_interval: Duration::from_secs(1), retention_days: 14, writer_memory_mb: 64, min_free_mb: 100 }
    }
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self { extra_keys: Vec::new(), mode: RedactMode::Replace, hash_key_env: "LOGWARDEN_REDACT_KEY".into() }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        // The lists live in logwarden.toml; a file that sets `skip_health_checks` without
        // `health_paths` still gets them.
        let d: toml::Table = toml::from_str(DEFAULT_TOML).expect("embedded default parses");
        let list = |key: &str| -> Vec<String> {
            d.get("filter")
                .and_then(|f| f.get(key))
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        Self {
            skip_health_checks: true,
            health_paths: list("health_paths"),
            skip_static_assets: true,
            static_extensions: list("static_extensions"),
            skip: Vec::new(),
        }
    }
}

impl SourceConfig {
    /// The parser specification of this source.
    pub fn format_spec(&self) -> FormatSpec {
        match (self.format, &self.log_format) {
            (FormatName::Nginx, Some(f)) => {
                FormatSpec::Custom(CustomFormat::nginx(f.get_ref()).expect("validated").into())
            }
            (FormatName::Apache, Some(f)) => {
                FormatSpec::Custom(CustomFormat::apache(f.get_ref()).expect("validated").into())
            }
            (FormatName::Auto, _) => FormatSpec::Auto,
            (FormatName::Combined | FormatName::Common | FormatName::Nginx | FormatName::Apache, _) => {
                FormatSpec::Fixed(Kind::Combined)
            }
            (FormatName::Json, _) => FormatSpec::Fixed(Kind::Json),
            (FormatName::Logfmt, _) => FormatSpec::Fixed(Kind::Logfmt),
            (FormatName::Express, _) => FormatSpec::Fixed(Kind::Express),
            (FormatName::Alb, _) => FormatSpec::Fixed(Kind::Alb),
            (FormatName::W3c, _) => FormatSpec::Fixed(Kind::W3c),
            (FormatName::Haproxy, _) => FormatSpec::Fixed(Kind::Haproxy),
            (FormatName::ErrorLog, _) => FormatSpec::Fixed(Kind::ErrorLog),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|c| *c == b'\n').count() + 1
}

/// The key written on a line (`format = "x"` gives `format`), for error messages.
fn key_on_line(text: &str, line: usize) -> String {
    let l = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let key = l.split('=').next().unwrap_or("").trim().trim_matches(['[', ']']);
    key.to_string()
}

pub(crate) fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map_or(0, |s| line_of(text, s.start));
    let mut key = key_on_line(text, line);
    // For unknown keys the message names the key; prefer it.
    if let Some(k) = e.message().strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
        key = k.to_string();
    }
    ConfigError::Invalid { origin: origin.to_string(), line, key, message: e.message().to_string() }
}

impl ConfigFile {
    /// Parses and validates a configuration text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: ConfigFile = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        cfg.validate(origin, text)?;
        Ok(cfg)
    }

    /// Loads `path`, or the embedded default when `None`, then applies `LOGWARDEN_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?,
            ),
            None => ("<embedded default>".to_string(), DEFAULT_TOML.to_string()),
        };
        Self::parse_with_env(&origin, &text, std::env::vars())
    }

    /// Parses `text`, then applies `LOGWARDEN_SECTION__KEY=value` overrides from `vars`.
    /// Values are read as TOML when they parse as such (numbers, booleans, arrays) and as
    /// strings otherwise. The file is validated on its own first so its errors keep their lines.
    pub fn parse_with_env(
        origin: &str,
        text: &str,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file = Self::parse(origin, text)?;
        let overrides: Vec<(String, Vec<String>, String)> = vars
            .filter_map(|(var, value)| {
                let rest = var.strip_prefix("LOGWARDEN_")?;
                // Variables that are settings of the process, not configuration keys.
                if matches!(rest, "CONFIG" | "CORPUS" | "LOG" | "API_TOKEN")
                    || var == file.redact.hash_key_env
                    || file.api.tokens.iter().any(|t| t.token_env == var)
                {
                    return None;
                }
                let path = rest.split("__").map(str::to_ascii_lowercase).collect();
                Some((var, path, value))
            })
            .collect();
        if overrides.is_empty() {
            return Ok(file);
        }
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        for (var, path, value) in &overrides {
            let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.clone()));
            let mut slot = &mut table;
            for part in &path[..path.len() - 1] {
                slot = slot
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| ConfigError::Env {
                        var: var.clone(),
                        message: format!("`{part}` is not a section"),
                    })?;
            }
            slot.insert(path[path.len() - 1].clone(), parsed);
        }
        let merged = toml::to_string(&table)
            .map_err(|e| ConfigError::Env { var: "LOGWARDEN_*".into(), message: e.to_string() })?;
        Self::parse("<environment>", &merged).map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => {
                let var = overrides
                    .iter()
                    .find(|(_, p, _)| p.last() == Some(&key))
                    .map_or_else(|| "LOGWARDEN_*".to_string(), |(v, _, _)| v.clone());
                ConfigError::Env { var, message: format!("key `{key}`: {message}") }
            }
            other => other,
        })
    }

    fn validate(&self, origin: &str, text: &str) -> Result<(), ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            line: span.map_or(0, |s| line_of(text, s.start)),
            key: key.to_string(),
            message,
        };
        for (i, s) in self.sources.iter().enumerate() {
            if s.include.is_empty() {
                return Err(invalid(None, &format!("sources[{i}].include"), "at least one glob is needed".into()));
            }
            for g in s.include.iter().chain(&s.exclude) {
                if let Err(e) = glob::Pattern::new(g) {
                    return Err(invalid(
                        find(text, g),
                        &format!("sources[{i}].include"),
                        format!("invalid glob {g:?}: {e}"),
                    ));
                }
            }
            if let Some(f) = &s.log_format {
                let compiled = match s.format {
                    FormatName::Nginx => CustomFormat::nginx(f.get_ref()).map(drop),
                    FormatName::Apache => CustomFormat::apache(f.get_ref()).map(drop),
                    _ => {
                        return Err(invalid(
                            Some(f.span()),
                            "log_format",
                            "needs format = \"nginx\" or \"apache\"".into(),
                        ));
                    }
                };
                compiled.map_err(|e| invalid(Some(f.span()), "log_format", e.to_string()))?;
            }
        }
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return Err(invalid(None, "api.tls_cert", "tls_cert and tls_key go together".into()));
        }
        for p in &self.api.trusted_proxies {
            if crate::api::https::Cidr::parse(p).is_none() {
                return Err(invalid(
                    find(text, p),
                    "api.trusted_proxies",
                    format!("{p:?} is not an address or CIDR block"),
                ));
            }
        }
        let ident = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        for (key, value) in
            [("clickhouse.database", &self.clickhouse.database), ("clickhouse.table", &self.clickhouse.table)]
        {
            if !ident(value) {
                return Err(invalid(
                    find(text, value),
                    key,
                    format!("{value:?} must be letters, digits and underscores"),
                ));
            }
        }
        for (i, r) in self.alerts.receivers.iter().enumerate() {
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(invalid(
                    find(text, &r.url),
                    &format!("alerts.receivers[{i}].url"),
                    format!("{:?} is not an http(s) URL", r.url),
                ));
            }
        }
        for r in &self.stats.routes {
            if let Err(e) = crate::stats::routes::Template::parse(r) {
                return Err(invalid(find(text, r), "stats.routes", e));
            }
        }
        if !matches!(self.log_level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
            return Err(invalid(
                find(text, &self.log_level),
                "log_level",
                format!("unknown level {:?}, expected error, warn, info, debug or trace", self.log_level),
            ));
        }
        if self.redact.mode == RedactMode::Hash && std::env::var_os(&self.redact.hash_key_env).is_none() {
            return Err(invalid(
                find(text, "hash"),
                "redact.mode",
                format!("mode = \"hash\" needs a key in the environment variable {}", self.redact.hash_key_env),
            ));
        }
        Ok(())
    }
}

fn find(text: &str, needle: &str) -> Option<std::ops::Range<usize>> {
    text.find(needle).map(|i| i..i + needle.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let c = ConfigFile::parse("default", DEFAULT_TOML).unwrap();
        assert_eq!(c.api.listen.port(), 7700);
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].read_from, ReadFrom::End);
        assert_eq!(c.index.commit_interval, Duration::from_secs(1));
        assert!(c.filter.health_paths.contains(&"/healthz".to_string()));
    }

    #[test]
    fn every_format_name_is_accepted() {
        for name in [
            "auto",
            "combined",
            "common",
            "json",
            "logfmt",
            "express",
            "alb",
            "w3c",
            "haproxy",
            "error_log",
            "nginx",
            "apache",
        ] {
            let text = format!("[[sources]]\ninclude = [\"/x\"]\nformat = \"{name}\"\n");
            assert!(ConfigFile::parse("x", &text).is_ok(), "{name}");
        }
    }

    #[test]
    fn empty_file_uses_defaults() {
        let c = ConfigFile::parse("x", "").unwrap();
        assert_eq!(c.index.retention_days, 14);
        assert!(c.filter.static_extensions.contains(&"css".to_string()));
    }

    fn err(text: &str) -> String {
        ConfigFile::parse("lw.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("data_dir = \"d\"\n[index]\ncommit_intervall = \"1s\"\n");
        assert!(e.starts_with("lw.toml:3: key `commit_intervall`"), "{e}");
        let e = err("[[sources]]\ninclude = [\"a\"]\nformat = \"nginxx\"\n");
        assert!(e.starts_with("lw.toml:3: key `format`") && e.contains("unknown variant"), "{e}");
        let e = err("[index]\nretention_days = \"x\"\n");
        assert!(e.starts_with("lw.toml:2: key `retention_days`"), "{e}");
        let e = err("[index]\ncommit_interval = \"soon\"\n");
        assert!(e.contains("lw.toml:2") && e.contains("invalid duration"), "{e}");
        let e = err("[[sources]]\ninclude = [\"a\"]\nformat = \"nginx\"\nlog_format = \"$status$request_time\"\n");
        assert!(e.starts_with("lw.toml:4: key `log_format`"), "{e}");
        let e = err("[api]\nlisten = \"nope\"\n");
        assert!(e.starts_with("lw.toml:2: key `listen`"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let vars = vec![
            ("LOGWARDEN_API__LISTEN".to_string(), "127.0.0.1:2".to_string()),
            ("LOGWARDEN_INDEX__RETENTION_DAYS".to_string(), "3".to_string()),
            ("LOGWARDEN_DATA_DIR".to_string(), "/tmp/x".to_string()),
            ("OTHER".to_string(), "1".to_string()),
        ];
        let c = ConfigFile::parse_with_env("x", "[api]\nlisten = \"127.0.0.1:1\"\n", vars.into_iter()).unwrap();
        assert_eq!(c.api.listen.port(), 2);
        assert_eq!(c.index.retention_days, 3);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let bad = ConfigFile::parse_with_env(
            "x",
            "",
            vec![("LOGWARDEN_INDEX__RETENTION_DAYS".to_string(), "zero".to_string())].into_iter(),
        );
        assert!(bad.unwrap_err().to_string().starts_with("environment variable LOGWARDEN_INDEX__RETENTION_DAYS"));
    }
}
