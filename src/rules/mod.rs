//! Anomaly rules: TOML rule files compiled into one multi-pattern regex-automata engine per
//! (target, transform chain), so each field is transformed once and scanned once whatever the
//! number of rules. Structural rules (sizes, missing headers) are checked directly.
//!
//! Rules run after redaction, on the event that will be stored: what an alert or a search
//! shows is exactly what matched. A secret value hidden by redaction cannot carry an attack
//! that the rules then miss in another field, because the rest of the event is intact.

pub mod eval;
pub mod transform;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::meta::Regex;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::Deserialize;

use crate::event::{AnomalyMatch, AnomalyTags, Event};
pub use transform::Transform;

/// The built-in rule pack, embedded from `rules/` at the repository root.
pub const BUILTIN: &[(&str, &str)] = &[
    ("sqli.toml", include_str!("../../rules/sqli.toml")),
    ("xss.toml", include_str!("../../rules/xss.toml")),
    ("cmdi.toml", include_str!("../../rules/cmdi.toml")),
    ("traversal.toml", include_str!("../../rules/traversal.toml")),
    ("scanners.toml", include_str!("../../rules/scanners.toml")),
    ("protocol.toml", include_str!("../../rules/protocol.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Low,
    Moderate,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Moderate => "MODERATE",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// The parts of an event a rule can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Path,
    Query,
    UserAgent,
    Referer,
    Body,
    Method,
    /// Every header value.
    Headers,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Path => "path",
            Target::Query => "query",
            Target::UserAgent => "user_agent",
            Target::Referer => "referer",
            Target::Body => "body",
            Target::Method => "method",
            Target::Headers => "headers",
        }
    }

    fn value(self, ev: &Event) -> Vec<&str> {
        match self {
            Target::Path => ev.path.as_deref().into_iter().collect(),
            Target::Query => ev.query.as_deref().into_iter().collect(),
            Target::UserAgent => ev.user_agent.as_deref().into_iter().collect(),
            Target::Referer => ev.referer.as_deref().into_iter().collect(),
            Target::Body => ev.body.as_deref().into_iter().collect(),
            Target::Method => ev.method.as_deref().into_iter().collect(),
            Target::Headers => ev.headers.values().map(String::as_str).collect(),
        }
    }
}

/// A check on the shape of a request rather than its text.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The user-agent is absent or empty.
    UserAgentMissing,
    /// Request or response body larger than this many bytes.
    RequestBytesAbove(u64),
    /// A header (lowercase name) is present.
    HeaderPresent(String),
    /// The method is not one of these.
    MethodNotIn(Vec<String>),
    /// Both headers are present and differ (a forged `X-Forwarded-Host` against `Host`).
    HeadersDiffer(String, String),
    /// `X-Forwarded-For` holds something that is not an address, or an absurd number of hops.
    ForwardedForImplausible,
}

/// More proxies than this in one `X-Forwarded-For` is not a real chain.
const MAX_FORWARDED_HOPS: usize = 10;

impl Condition {
    fn holds(&self, ev: &Event) -> bool {
        match self {
            Condition::UserAgentMissing => {
                ev.parse_error.is_none()
                    && ev.method.is_some()
                    && ev.user_agent.as_deref().is_none_or(|u| u.trim().is_empty())
            }
            Condition::RequestBytesAbove(n) => {
                ev.request_bytes.is_some_and(|b| b > *n)
                    || ev.headers.get("content-length").and_then(|v| v.parse::<u64>().ok()).is_some_and(|b| b > *n)
                    || ev.body.as_ref().is_some_and(|b| b.len() as u64 > *n)
            }
            Condition::HeaderPresent(h) => ev.headers.contains_key(h.as_str()),
            Condition::MethodNotIn(set) => {
                ev.method.as_ref().is_some_and(|m| !set.iter().any(|s| s.eq_ignore_ascii_case(m)))
            }
            Condition::HeadersDiffer(a, b) => match (ev.headers.get(a.as_str()), ev.headers.get(b.as_str())) {
                (Some(x), Some(y)) => !x.trim().eq_ignore_ascii_case(y.trim()),
                _ => false,
            },
            Condition::ForwardedForImplausible => ev.headers.get("x-forwarded-for").is_some_and(|v| {
                let hops: Vec<&str> = v.split(',').map(str::trim).collect();
                hops.len() > MAX_FORWARDED_HOPS || hops.iter().any(|h| !plausible_hop(h))
            }),
        }
    }
}

/// An `X-Forwarded-For` entry: an address, with a port or brackets, `for=` style, or `unknown`.
fn plausible_hop(hop: &str) -> bool {
    let h = hop.trim_start_matches("for=").trim_matches('"');
    let h = h.strip_prefix('[').and_then(|x| x.split(']').next()).unwrap_or(h);
    let h = match h.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|c| c.is_ascii_digit()) => ip,
        _ => h,
    };
    h.eq_ignore_ascii_case("unknown") || h.parse::<std::net::IpAddr>().is_ok()
}

/// One rule as written in a rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub family: String,
    pub severity: Severity,
    pub score: u32,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub patterns: Vec<String>,
    pub condition: Option<Condition>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Values (of the rule's first target) that must match.
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub counter_examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<Rule>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}:{line}: {message}")]
    Invalid { file: String, line: usize, message: String },
    #[error("cannot read {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("rule `{rule}` failed its own test: {message}")]
    Example { rule: String, message: String },
}

/// All patterns of one target and transform chain, compiled together.
struct Group {
    target: Target,
    transforms: Vec<Transform>,
    regex: Regex,
    /// Each pattern alone, to find where a reported pattern matched: only for hits, which are
    /// rare, so the shared engine stays the only scan of clean traffic. Compiled at a pattern's
    /// first hit: compiled up front they took about 60 MB, more than anything else in the
    /// daemon but the index writer.
    singles: Vec<OnceLock<Regex>>,
    patterns: Vec<String>,
    /// Pattern index -> rule index.
    rules: Vec<usize>,
}

impl Group {
    /// Pattern `p` alone. Only the start and end of a match are asked of it, so it needs no
    /// one-pass DFA (which is for capture groups, and large).
    fn single(&self, p: usize) -> &Regex {
        self.singles[p].get_or_init(|| {
            Regex::builder()
                .configure(Regex::config().onepass(false))
                .build(&self.patterns[p])
                .expect("patterns are validated in from_sources")
        })
    }
}

/// Every rule, compiled.
pub struct RuleSet {
    rules: Vec<Rule>,
    groups: Vec<Group>,
    structural: Vec<usize>,
}

/// What the rules found in one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub rules: Vec<String>,
    pub score: u32,
    pub severity: Option<Severity>,
    /// Where each pattern rule matched: (rule id, target, excerpt of the transformed text).
    pub matches: Vec<(String, Target, String)>,
}

/// About 80 characters around `start..end`, on character boundaries.
fn excerpt(text: &str, start: usize, end: usize) -> String {
    let mut from = start.saturating_sub(24);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (end + 24).min(text.len()).min(from + 80);
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    text[from..to.max(from)].to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|c| *c == b'\n').count() + 1
}

impl RuleSet {
    /// Parses rule files given as (name, text).
    pub fn from_sources(files: &[(String, String)]) -> Result<Self, RuleError> {
        let mut rules: Vec<Rule> = Vec::new();
        for (file, text) in files {
            let parsed: RuleFile = toml::from_str(text).map_err(|e| RuleError::Invalid {
                file: file.clone(),
                line: e.span().map_or(0, |s| line_of(text, s.start)),
                message: e.message().to_string(),
            })?;
            for spanned in parsed.rule {
                let line = line_of(text, spanned.span().start);
                let rule = spanned.into_inner();
                let invalid = |message: String| RuleError::Invalid {
                    file: file.clone(),
                    line,
                    message: format!("rule `{}`: {message}", rule.id),
                };
                if rules.iter().any(|r| r.id == rule.id) {
                    return Err(invalid("duplicate id".into()));
                }
                match (&rule.condition, rule.patterns.is_empty(), rule.targets.is_empty()) {
                    (Some(_), true, _) | (None, false, false) => {}
                    (Some(_), false, _) => return Err(invalid("has both patterns and a condition".into())),
                    (None, true, _) => return Err(invalid("needs patterns or a condition".into())),
                    (None, false, true) => return Err(invalid("patterns need targets".into())),
                }
                for p in &rule.patterns {
                    Regex::new(p).map_err(|e| invalid(format!("pattern {p:?}: {e}")))?;
                }
                rules.push(rule);
            }
        }
        Self::compile(rules)
    }

    /// The built-in pack, plus the `.toml` files of `dir` when given.
    pub fn load(dir: Option<&Path>) -> Result<Self, RuleError> {
        let mut files: Vec<(String, String)> =
            BUILTIN.iter().map(|(n, t)| (format!("rules/{n}"), t.to_string())).collect();
        if let Some(dir) = dir {
            let read = |source| RuleError::Read { file: dir.display().to_string(), source };
            let mut paths: Vec<_> = std::fs::read_dir(dir)
                .map_err(read)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                // Alert rules may live in the same folder; they are not anomaly rules.
                .filter(|p| p.file_name().is_none_or(|n| n != "alerts.toml"))
                .collect();
            paths.sort();
            for p in paths {
                let text = std::fs::read_to_string(&p)
                    .map_err(|source| RuleError::Read { file: p.display().to_string(), source })?;
                files.push((p.display().to_string(), text));
            }
        }
        Self::from_sources(&files)
    }

    fn compile(rules: Vec<Rule>) -> Result<Self, RuleError> {
        // (target, transform chain) -> (rule index, pattern) of every pattern that scans it.
        type Key = (Target, Vec<Transform>);
        let mut by_key: BTreeMap<Key, Vec<(usize, &str)>> = BTreeMap::new();
        let mut structural = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.condition.is_some() {
                structural.push(i);
            }
            for t in &r.targets {
                for p in &r.patterns {
                    by_key.entry((*t, r.transforms.clone())).or_default().push((i, p.as_str()));
                }
            }
        }
        let mut groups = Vec::new();
        for ((target, transforms), pats) in by_key {
            // MatchKind::All with `which_overlapping_matches` reports every pattern that
            // matches anywhere, not only the leftmost of overlapping ones.
            let regex = Regex::builder()
                .configure(Regex::config().match_kind(MatchKind::All))
                .build_many(&pats.iter().map(|(_, p)| *p).collect::<Vec<_>>())
                .map_err(|e| RuleError::Invalid { file: "rules".into(), line: 0, message: e.to_string() })?;
            // Every pattern was compiled alone when its file was read, so this cannot fail; a
            // skipped pattern would misalign the indices, hence no filter_map.
            groups.push(Group {
                target,
                transforms,
                regex,
                singles: pats.iter().map(|_| OnceLock::new()).collect(),
                patterns: pats.iter().map(|(_, p)| p.to_string()).collect(),
                rules: pats.iter().map(|(i, _)| *i).collect(),
            });
        }
        Ok(Self { rules, groups, structural })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule that matches `ev`.
    pub fn evaluate(&self, ev: &Event) -> Verdict {
        let mut hit = vec![false; self.rules.len()];
        let mut matches: Vec<(usize, Target, String)> = Vec::new();
        for g in &self.groups {
            for value in g.target.value(ev) {
                let text = transform::apply(value, &g.transforms);
                let mut set = PatternSet::new(g.regex.pattern_len());
                g.regex.which_overlapping_matches(&Input::new(text.as_ref()), &mut set);
                for p in set.iter() {
                    let rule = g.rules[p.as_usize()];
                    if !hit[rule]
                        && let Some(m) = g.single(p.as_usize()).find(text.as_ref())
                    {
                        matches.push((rule, g.target, excerpt(&text, m.start(), m.end())));
                    }
                    hit[rule] = true;
                }
            }
        }
        for &i in &self.structural {
            if self.rules[i].condition.as_ref().is_some_and(|c| c.holds(ev)) {
                hit[i] = true;
            }
        }
        let mut v = Verdict::default();
        for (r, _) in self.rules.iter().zip(&hit).filter(|(_, h)| **h) {
            v.rules.push(r.id.clone());
            v.score += r.score;
            v.severity = v.severity.max(Some(r.severity));
        }
        v.matches = matches.into_iter().map(|(i, t, e)| (self.rules[i].id.clone(), t, e)).collect();
        v
    }

    /// Runs every rule's examples and counter-examples (`logwarden rules check`).
    pub fn check(&self) -> Result<usize, RuleError> {
        let mut n = 0;
        for r in &self.rules {
            let Some(target) = r.targets.first() else { continue };
            for (text, must) in
                r.examples.iter().map(|e| (e, true)).chain(r.counter_examples.iter().map(|e| (e, false)))
            {
                let mut ev =
                    Event { method: Some("GET".into()), user_agent: Some("Mozilla/5.0".into()), ..Event::default() };
                match target {
                    Target::Path => ev.path = Some(text.clone()),
                    Target::Query => ev.query = Some(text.clone()),
                    Target::UserAgent => ev.user_agent = Some(text.clone()),
                    Target::Referer => ev.referer = Some(text.clone()),
                    Target::Body => ev.body = Some(text.clone()),
                    Target::Method => ev.method = Some(text.clone()),
                    Target::Headers => {
                        ev.headers.insert("x-test".into(), text.clone());
                    }
                }
                let matched = self.evaluate(&ev).rules.contains(&r.id);
                if matched != must {
                    let message = if must {
                        format!("example {text:?} does not match")
                    } else {
                        format!("counter-example {text:?} matches")
                    };
                    return Err(RuleError::Example { rule: r.id.clone(), message });
                }
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The rules stage of the pipeline: the current rule set, swapped in when the rule directory
/// changes. Each pipeline worker holds a clone and asks for the newest set once per batch, so
/// matching never takes a lock.
#[derive(Clone)]
pub struct Detector {
    current: Arc<RuleSet>,
    seen: u64,
    threshold: u32,
    shared: Arc<Shared>,
    _watcher: Option<Arc<Mutex<notify::RecommendedWatcher>>>,
}

struct Shared {
    generation: AtomicU64,
    latest: Mutex<Arc<RuleSet>>,
}

impl Detector {
    /// Loads the rules and, when `dir` is given, watches it: an invalid change is logged with
    /// its file, line and rule, and the previous rules stay in force.
    pub fn new(dir: Option<&Path>, threshold: u32) -> Result<Self, RuleError> {
        let set = Arc::new(RuleSet::load(dir)?);
        let shared = Arc::new(Shared { generation: AtomicU64::new(0), latest: Mutex::new(set.clone()) });
        let watcher = dir.and_then(|d| watch(d, shared.clone())).map(|w| Arc::new(Mutex::new(w)));
        Ok(Self { current: set, seen: 0, threshold, shared, _watcher: watcher })
    }

    /// Picks up a reloaded rule set, if there is one.
    pub fn refresh(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen {
            if let Ok(latest) = self.shared.latest.lock() {
                self.current = latest.clone();
            }
            self.seen = g;
        }
    }

    pub fn tags(&self, ev: &Event) -> AnomalyTags {
        let v = self.current.evaluate(ev);
        let mut families: Vec<String> = Vec::new();
        for id in &v.rules {
            if let Some(r) = self.current.rules.iter().find(|r| &r.id == id)
                && !families.contains(&r.family)
            {
                families.push(r.family.clone());
            }
        }
        AnomalyTags {
            attack: v.score >= self.threshold,
            families,
            score: v.score,
            severity: v.severity.map(|s| s.name().to_string()),
            matches: v
                .matches
                .into_iter()
                .map(|(rule, target, excerpt)| AnomalyMatch { rule, target: target.name().to_string(), excerpt })
                .collect(),
            rules: v.rules,
        }
    }
}

fn watch(dir: &Path, shared: Arc<Shared>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let owned = dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_err() {
            return;
        }
        match RuleSet::load(Some(&owned)) {
            Ok(set) => {
                let n = set.len();
                if let Ok(mut latest) = shared.latest.lock() {
                    *latest = Arc::new(set);
                }
                shared.generation.fetch_add(1, Ordering::Release);
                tracing::info!(rules = n, dir = %owned.display(), "reloaded rules");
            }
            Err(e) => tracing::error!(error = %e, "rule change rejected, keeping the previous rules"),
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the rules directory; changes need a restart"))
    .ok()?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the rules directory"))
        .ok()?;
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pack_loads_and_passes_its_own_examples() {
        let set = RuleSet::load(None).expect("built-in rules compile");
        assert!(set.len() >= 15, "{} rules", set.len());
        let checked = set.check().unwrap_or_else(|e| panic!("{e}"));
        assert!(checked >= 40, "{checked} examples");
    }

    #[test]
    fn evaluate_scores_and_ranks() {
        let set = RuleSet::load(None).expect("rules");
        let ev = Event {
            method: Some("GET".into()),
            path: Some("/products".into()),
            query: Some("id=1%27%20UNION%20SELECT%20password%20FROM%20users--".into()),
            user_agent: Some("sqlmap/1.7.2#stable".into()),
            ..Event::default()
        };
        let v = set.evaluate(&ev);
        assert!(v.rules.iter().any(|r| r.starts_with("sqli-")), "{v:?}");
        assert!(v.rules.iter().any(|r| r.starts_with("scanner-")), "{v:?}");
        assert_eq!(v.severity, Some(Severity::Critical));
        let (_, target, excerpt) = v.matches.iter().find(|(r, _, _)| r == "sqli-union").expect("a located match");
        assert_eq!(*target, Target::Query);
        assert!(excerpt.contains("union select password"), "{excerpt}");
        assert!(v.score >= 10);
        let benign = Event {
            method: Some("GET".into()),
            path: Some("/search".into()),
            query: Some("q=union+station+select+seats".into()),
            user_agent: Some("Mozilla/5.0".into()),
            ..Event::default()
        };
        assert_eq!(set.evaluate(&benign), Verdict::default());
    }

    #[test]
    fn header_conditions() {
        let set = RuleSet::load(None).expect("rules");
        let with = |pairs: &[(&str, &str)]| {
            let mut ev = Event {
                method: Some("GET".into()),
                path: Some("/reset".into()),
                user_agent: Some("Mozilla/5.0".into()),
                ..Event::default()
            };
            for (k, v) in pairs {
                ev.headers.insert(k.to_string(), v.to_string());
            }
            set.evaluate(&ev).rules
        };
        assert!(
            with(&[("host", "shop.example.com"), ("x-forwarded-host", "evil.example")])
                .contains(&"header-forwarded-host-mismatch".to_string())
        );
        assert!(with(&[("host", "shop.example.com"), ("x-forwarded-host", "shop.example.com")]).is_empty());
        assert!(with(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]).is_empty());
        assert!(with(&[("x-forwarded-for", "[2001:db8::1]:443, unknown, 10.0.0.1:8080")]).is_empty());
        assert!(
            with(&[("x-forwarded-for", "127.0.0.1' or 1=1--")])
                .contains(&"header-forwarded-for-implausible".to_string())
        );
        let long = ["10.0.0.1"; 12].join(",");
        assert!(with(&[("x-forwarded-for", long.as_str())]).contains(&"header-forwarded-for-implausible".to_string()));
    }

    #[test]
    fn invalid_rule_files_name_file_line_and_rule() {
        let bad = "[[rule]]\nid = \"a\"\nname = \"n\"\nfamily = \"x\"\nseverity = \"HIGH\"\nscore = 1\ntargets = [\"query\"]\npatterns = [\"(unclosed\"]\n";
        let e = RuleSet::from_sources(&[("mine.toml".into(), bad.into())]).err().expect("invalid").to_string();
        assert!(e.starts_with("mine.toml:1: rule `a`: pattern"), "{e}");
        let bad = "[[rule]]\nid = \"a\"\nname = \"n\"\nfamily = \"x\"\nseverity = \"SEVERE\"\nscore = 1\n";
        let e = RuleSet::from_sources(&[("mine.toml".into(), bad.into())]).err().expect("invalid").to_string();
        assert!(e.starts_with("mine.toml:5:"), "{e}");
    }
}
