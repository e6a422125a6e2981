//! Anomaly rules: TOML rule files compiled into multi-pattern regex-automata engines, so a field
//! is transformed once per transform chain and each distinct text is scanned once, whatever the
//! number of rules. Structural rules (sizes, missing headers) are checked directly.
//!
//! Rules run after redaction, on the event that will be stored: what an alert or a search
//! shows is exactly what matched. A secret value hidden by redaction cannot carry an attack
//! that the rules then miss in another field, because the rest of the event is intact.

pub mod eval;
pub mod transform;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::meta::Regex;
use serde::Deserialize;

use crate::event::{AnomalyMatch, AnomalyTags, Event};
pub use transform::Transform;
use transform::Transforms;

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

    fn values(self, ev: &Event) -> Values<'_> {
        let one = match self {
            Target::Path => ev.path.as_deref(),
            Target::Query => ev.query.as_deref(),
            Target::UserAgent => ev.user_agent.as_deref(),
            Target::Referer => ev.referer.as_deref(),
            Target::Body => ev.body.as_deref(),
            Target::Method => ev.method.as_deref(),
            Target::Headers => return Values::Many(ev.headers.values()),
        };
        Values::One(one)
    }
}

/// The values of one target in an event. An enum rather than a chain of iterators, whose state
/// is several times larger and is moved at every step.
enum Values<'e> {
    One(Option<&'e str>),
    Many(std::collections::btree_map::Values<'e, String, String>),
}

impl<'e> Iterator for Values<'e> {
    type Item = &'e str;

    fn next(&mut self) -> Option<&'e str> {
        match self {
            Values::One(one) => one.take(),
            Values::Many(many) => many.next().map(String::as_str),
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
    /// Whether it reads nothing but the headers, so that it cannot hold when there are none,
    /// as in every line of the access log formats.
    fn reads_only_headers(&self) -> bool {
        matches!(self, Condition::HeaderPresent(_) | Condition::HeadersDiffer(..) | Condition::ForwardedForImplausible)
    }

    #[inline]
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

/// One pattern: the rule it belongs to, the transform chain whose output it reads, and the
/// targets it applies to.
struct Pattern {
    rule: usize,
    chain: usize,
    targets: Vec<Target>,
    text: String,
}

/// A transform chain's prefix, as a step from a shorter prefix: chains that start alike (most
/// start with URL decoding) share the work, and a field is transformed once per prefix.
struct Node {
    parent: usize,
    step: Transform,
}

/// Patterns match bytes, with ASCII classes: `\w`, `\d`, `\s` and `\b` are ASCII, `.` is any
/// byte but `\n`, and `(?i)` folds ASCII letters. Unicode classes make the lazy DFA large, and
/// a Unicode `\b` makes it give up on any non-ASCII byte and fall back to an engine a hundred
/// times slower; an attacker could pick that path on purpose. `(?u)` turns Unicode back on
/// for a pattern that needs it.
fn builder() -> regex_automata::meta::Builder {
    let mut b = Regex::builder();
    b.syntax(syntax());
    b
}

fn syntax() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new().unicode(false).utf8(false)
}

/// Whether a pattern may hold an inline group that turns a flag off (`(?-i)`, `(?i-u:`). Errs
/// towards yes: such a group inside a class (`[(?-i)]`) counts too.
fn turns_a_flag_off(pattern: &str) -> bool {
    pattern.match_indices("(?").any(|(i, _)| {
        let escapes = pattern[..i].bytes().rev().take_while(|b| *b == b'\\').count();
        let flags = &pattern[i + 2..];
        let end = flags.find([')', ':']).unwrap_or(flags.len());
        escapes % 2 == 0 && flags[..end].contains('-') && flags[..end].bytes().all(|b| b"imsRUux-".contains(&b))
    })
}

/// One transform chain: where its output is.
struct Chain {
    slot: usize,
}

/// The most memory the prefilter's lazy DFA keeps per thread. Real traffic reaches many more of
/// its states than generated traffic: on a real 10,000-line access log, with the default 2 MB
/// the states were thrown away and rebuilt over and over, at ten times the cost per event;
/// 4 MB was just enough.
const PREFILTER_CACHE: usize = 8 << 20;

/// What one target needs: the chain prefixes to compute, in order, and the chains whose output
/// is scanned.
struct Plan {
    target: Target,
    /// Slots to compute, parents first.
    steps: Vec<usize>,
    /// The chains that read it.
    chains: Vec<usize>,
    /// The transforms of those steps but `Lowercase`: when none of them would change an ASCII
    /// value, the value is scanned as it is (see `RuleSet::scan`).
    changers: Transforms,
    /// In every chain, what follows a `Lowercase` gives texts that differ only in case when
    /// given texts that differ only in case; so the chains can be run without lowercasing for
    /// the prefilter, which ignores case (see `RuleSet::scan`).
    congruent: bool,
}

/// Whether a run of the chains lowercases, or leaves that to the prefilter, which ignores case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lowercasing {
    Done,
    Skipped,
}

/// The state of one evaluation.
struct Scan {
    /// The rules matched so far, where they matched first, and an excerpt: a few at most.
    matches: Vec<(usize, Target, String)>,
    /// Slot -> index of its text among the distinct texts of the current field.
    slots: Vec<usize>,
    /// Text -> transform -> the text it gave, for the steps taken on the current field: chains
    /// that differ only by steps that changed nothing reach the same text, and the rest of
    /// their work is not done twice.
    done: Vec<[Option<usize>; Transform::ALL.len()]>,
}

impl Scan {
    /// Counts the rules found in one field; the first field a rule matched gives its excerpt.
    fn add(&mut self, target: Target, found: &[(usize, String)]) {
        for (rule, excerpt) in found {
            if !self.matches.iter().any(|(r, ..)| r == rule) {
                self.matches.push((*rule, target, excerpt.clone()));
            }
        }
    }
}

/// How many field values a pipeline worker remembers the verdict on. Request logs repeat their
/// user agents, paths and referers, and a few thousand values cover most of a site's traffic.
const RECENT_SLOTS: usize = 4096;
/// Longer values are seldom repeated, and are not remembered.
const RECENT_LONGEST: usize = 512;

/// The verdicts on recent field values: which rules matched, and where. A direct-mapped table:
/// a value whose slot holds another value is evaluated and takes its place, so a flood of
/// distinct values costs a miss each and nothing more.
#[derive(Default)]
pub struct Recent {
    slots: Vec<Option<Remembered>>,
}

struct Remembered {
    target: Target,
    value: Box<str>,
    found: Vec<(usize, String)>,
}

impl Recent {
    /// The slot of a value, or `None` for a value too long to remember.
    fn slot(&mut self, target: Target, value: &str) -> Option<&mut Option<Remembered>> {
        if value.len() > RECENT_LONGEST {
            return None;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(RECENT_SLOTS, || None);
        }
        let h = rustc_hash::FxBuildHasher.hash_one((target, value)) as usize;
        self.slots.get_mut(h % RECENT_SLOTS)
    }
}

/// Every rule, compiled.
///
/// A field is transformed by each transform chain its rules use, chains sharing their common
/// prefixes, and each distinct text is scanned once by a prefilter that holds every pattern.
/// A field that no transform but lowercasing would change, which is most of clean traffic, is
/// scanned once as it is. A text the prefilter flags is scanned once more for the patterns
/// that match it; a pattern counts only where its chain produced the text and its rule targets
/// the field, and only then is it run alone, to find where it matched.
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Every pattern, ignoring the case of ASCII letters, for a yes or no. It matches all that
    /// the patterns match and a little more; only the patterns alone decide.
    prefilter: Regex,
    /// No pattern turns a flag off inline (`(?-i)`), so the prefilter matches a value wherever
    /// a pattern matches its lowercase form, and a clean value needs no transform at all.
    gated: bool,
    /// Every pattern, reporting each one that matches in one pass over a text the prefilter
    /// flagged. Built at the first such text.
    which: OnceLock<Regex>,
    chains: Vec<Chain>,
    patterns: Vec<Pattern>,
    /// Each pattern alone, to find where a pattern that `which` reported matches: only for
    /// hits, which are rare, so the prefilter stays the only scan of clean traffic. Compiled
    /// at a pattern's first use: compiled up front they took tens of megabytes.
    singles: Vec<OnceLock<Regex>>,
    /// Node k fills slot k + 1 from its parent's slot; slot 0 is the field as it is.
    nodes: Vec<Node>,
    /// One per target some pattern reads, in a fixed order.
    plans: Vec<Plan>,
    /// The rules that are a condition, by whether it reads anything but the headers.
    structural: Vec<usize>,
    on_headers: Vec<usize>,
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
                    builder().build(p).map_err(|e| invalid(format!("pattern {p:?}: {e}")))?;
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
        let mut chains: Vec<Vec<Transform>> = Vec::new();
        let mut patterns = Vec::new();
        let (mut structural, mut on_headers) = (Vec::new(), Vec::new());
        for (i, r) in rules.iter().enumerate() {
            match &r.condition {
                Some(c) if c.reads_only_headers() => on_headers.push(i),
                Some(_) => structural.push(i),
                None => {}
            }
            if r.patterns.is_empty() {
                continue;
            }
            let chain = chains.iter().position(|c| *c == r.transforms).unwrap_or_else(|| {
                chains.push(r.transforms.clone());
                chains.len() - 1
            });
            for p in &r.patterns {
                patterns.push(Pattern { rule: i, chain, targets: r.targets.clone(), text: p.clone() });
            }
        }
        // Each chain's patterns together, in rule order: the order a field's matches are
        // reported in (see `RuleSet::scan`).
        patterns.sort_by_key(|p| p.chain);
        // Every prefix of every chain. In slice order a prefix comes before its extensions, so
        // each node's parent is computed before it.
        let prefixes: Vec<&[Transform]> = chains
            .iter()
            .flat_map(|c| (1..=c.len()).map(move |k| &c[..k]))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Slot 0 is the field itself; the prefix at position k is slot k + 1.
        let slot_of = |p: &[Transform]| prefixes.iter().position(|q| *q == p).map_or(0, |k| k + 1);
        let nodes: Vec<Node> = prefixes
            .iter()
            .filter_map(|p| p.split_last())
            .map(|(step, rest)| Node { parent: slot_of(rest), step: *step })
            .collect();
        let chain_slots: Vec<usize> = chains.iter().map(|c| slot_of(c)).collect();
        // Per target: the chain prefixes its patterns need, and the chains' own slots.
        let mut needs: BTreeMap<Target, (BTreeSet<usize>, BTreeSet<usize>)> = BTreeMap::new();
        for pattern in &patterns {
            let chain = &chains[pattern.chain];
            for t in &pattern.targets {
                let (steps, ends) = needs.entry(*t).or_default();
                steps.extend((1..=chain.len()).map(|k| slot_of(&chain[..k])));
                ends.insert(pattern.chain);
            }
        }
        let plans = needs
            .into_iter()
            .map(|(target, (steps, ends))| {
                let changers: Transforms = steps.iter().map(|&slot| nodes[slot - 1].step).collect();
                let congruent = ends.iter().all(|&c| {
                    let chain = &chains[c];
                    let after = chain.iter().position(|t| *t == Transform::Lowercase).map_or(chain.len(), |k| k + 1);
                    chain[after..].iter().all(|t| t.maps_case_variants_alike())
                });
                Plan {
                    target,
                    steps: steps.into_iter().collect(),
                    chains: ends.into_iter().collect(),
                    changers: changers.without(Transform::Lowercase),
                    congruent,
                }
            })
            .collect();
        // The prefilter answers "does anything match" for clean traffic, which is nearly all
        // of it. Only a text it flags is matched against each pattern of the chains that
        // produced it.
        let all: Vec<&str> = patterns.iter().map(|p| p.text.as_str()).collect();
        let gated = !all.iter().any(|p| turns_a_flag_off(p));
        let prefilter = Regex::builder()
            .syntax(syntax().case_insensitive(true))
            .configure(Regex::config().hybrid_cache_capacity(PREFILTER_CACHE))
            .build_many(&all)
            .map_err(|e| RuleError::Invalid { file: "rules".into(), line: 0, message: e.to_string() })?;
        let chains = chain_slots.into_iter().map(|slot| Chain { slot }).collect();
        Ok(Self {
            rules,
            prefilter,
            gated,
            which: OnceLock::new(),
            chains,
            singles: patterns.iter().map(|_| OnceLock::new()).collect(),
            patterns,
            nodes,
            plans,
            structural,
            on_headers,
        })
    }

    /// Pattern `p` alone. Only the start and end of a match are asked of it, so it needs no
    /// one-pass DFA (which is for capture groups, and large).
    fn single(&self, p: usize) -> &Regex {
        self.singles[p].get_or_init(|| {
            builder()
                .configure(Regex::config().onepass(false))
                .build(&self.patterns[p].text)
                .expect("patterns are validated in from_sources")
        })
    }

    /// The patterns that match `text`, in one pass. Asking each pattern in turn cost a search
    /// per pattern of the chain, most of them finding nothing.
    fn matching(&self, text: &str) -> regex_automata::PatternSet {
        let mut set = regex_automata::PatternSet::new(self.patterns.len());
        self.which().which_overlapping_matches(&regex_automata::Input::new(text), &mut set);
        set
    }

    fn which(&self) -> &Regex {
        self.which.get_or_init(|| {
            let all: Vec<&str> = self.patterns.iter().map(|p| p.text.as_str()).collect();
            // The lazy DFA's default cache (2 MB a thread): it only reads flagged texts.
            builder()
                .configure(Regex::config().match_kind(regex_automata::MatchKind::All))
                .build_many(&all)
                .expect("patterns are validated in from_sources")
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule that matches `ev`.
    pub fn evaluate(&self, ev: &Event) -> Verdict {
        self.evaluate_with(ev, None)
    }

    /// Every rule that matches `ev`, taking the verdict on a field value from `recent` when it
    /// holds one.
    pub fn evaluate_with(&self, ev: &Event, mut recent: Option<&mut Recent>) -> Verdict {
        let mut scan = Scan {
            matches: Vec::new(),
            // Filled at the first field not remembered: most events need none.
            slots: Vec::new(),
            done: Vec::new(),
        };
        for plan in &self.plans {
            for value in plan.target.values(ev) {
                match recent.as_deref_mut().and_then(|r| r.slot(plan.target, value)) {
                    Some(Some(known)) if known.target == plan.target && *known.value == *value => {
                        scan.add(plan.target, &known.found);
                    }
                    slot => {
                        let found = self.scan(plan, value, &mut scan);
                        scan.add(plan.target, &found);
                        if let Some(slot) = slot {
                            *slot = Some(Remembered { target: plan.target, value: value.into(), found });
                        }
                    }
                }
            }
        }
        let Scan { matches, .. } = scan;
        let mut hit: Vec<usize> = matches.iter().map(|(r, ..)| *r).collect();
        let on_headers = if ev.headers.is_empty() { &[][..] } else { &self.on_headers[..] };
        for &i in self.structural.iter().chain(on_headers) {
            if self.rules[i].condition.as_ref().is_some_and(|c| c.holds(ev)) {
                hit.push(i);
            }
        }
        // In the order of the rules, as each rule is either a pattern rule or a condition.
        hit.sort_unstable();
        let mut v = Verdict::default();
        for r in hit.iter().map(|&i| &self.rules[i]) {
            v.rules.push(r.id.clone());
            v.score += r.score;
            v.severity = v.severity.max(Some(r.severity));
        }
        v.matches = matches.into_iter().map(|(i, t, e)| (self.rules[i].id.clone(), t, e)).collect();
        v
    }

    /// Transforms one field along the chains `plan` needs and scans each distinct result once.
    /// Returns each rule that matches the field, with an excerpt of where.
    ///
    /// First a cheaper pass that only says whether anything can match. The prefilter ignores
    /// case, and a pattern that matches a lowercased text matches the text itself with case
    /// ignored; so for ASCII text lowercasing is left out. Most values need no transform
    /// but lowercasing: those are read once, as they are. Only when that pass flags the value
    /// are the chains run in full.
    fn scan(&self, plan: &Plan, value: &str, scan: &mut Scan) -> Vec<(usize, String)> {
        let transform::Reading { changes, ascii } = transform::read(value);
        if self.gated && ascii {
            let clean = if !changes.meets(plan.changers) {
                !self.prefilter.is_match(value)
            } else {
                plan.congruent
                    && self
                        .texts(plan, value, changes, scan, Lowercasing::Skipped)
                        .is_some_and(|texts| !self.flags_any(plan, &texts, scan))
            };
            if clean {
                return Vec::new();
            }
        }
        let texts = self.texts(plan, value, changes, scan, Lowercasing::Done).expect("every text is made");
        let mut found: Vec<(usize, String)> = Vec::new();
        for (i, (text, _)) in texts.iter().enumerate() {
            if self.chains_ending(plan, i, scan).next().is_none() || !self.prefilter.is_match(text.as_ref()) {
                continue;
            }
            // The patterns that match somewhere in the text, a few of the hundreds its chains
            // hold, in the order of the chains. One that reads this target has its chain in the
            // plan, so its chain's slot was filled for this field: it counts only where its own
            // chain made the text.
            for p in self.matching(text).iter().map(|id| id.as_usize()) {
                let pattern = &self.patterns[p];
                if !pattern.targets.contains(&plan.target)
                    || scan.slots[self.chains[pattern.chain].slot] != i
                    || found.iter().any(|(r, _)| *r == pattern.rule)
                {
                    continue;
                }
                if let Some(m) = self.single(p).find(text.as_ref()) {
                    found.push((pattern.rule, excerpt(text, m.start(), m.end())));
                }
            }
        }
        found
    }

    /// The distinct texts the chains of `plan` make of `value`, each with the transforms that
    /// may change it if they were needed; `scan.slots` then says which text each chain prefix
    /// gave. With lowercasing skipped, `None` when a text to lowercase is not ASCII.
    fn texts<'a>(
        &self,
        plan: &Plan,
        value: &'a str,
        changes: Transforms,
        scan: &mut Scan,
        lowercasing: Lowercasing,
    ) -> Option<Vec<(Cow<'a, str>, Option<Transforms>)>> {
        // Each text with the transforms that may change it, read only when a step follows: the
        // text at the end of a chain, as most made ones are, needs no such pass.
        // A text per step at most: room for all of them at once, rather than growing step by step.
        let mut texts: Vec<(Cow<str>, Option<Transforms>)> = Vec::with_capacity(plan.steps.len() + 1);
        texts.push((Cow::Borrowed(value), Some(changes)));
        if scan.slots.is_empty() {
            scan.slots = vec![0; self.nodes.len() + 1];
            // A field seldom gives more than a few distinct texts, and an entry is 144 bytes:
            // room for one per step took a larger block (2.4 KB) than most events need.
            scan.done.reserve(4);
        }
        scan.done.clear();
        scan.done.push(Default::default());
        for &slot in &plan.steps {
            let node = &self.nodes[slot - 1];
            let from = scan.slots[node.parent];
            let to = match scan.done[from][node.step as usize] {
                Some(to) => to,
                None => {
                    let skip = node.step == Transform::Lowercase && lowercasing == Lowercasing::Skipped;
                    let (text, changes) = &mut texts[from];
                    if skip && !text.is_ascii() {
                        return None;
                    }
                    let may = !skip && changes.get_or_insert_with(|| transform::may_change(text)).contains(node.step);
                    let changed = may.then(|| transform::transform(text, node.step)).flatten();
                    let to = match changed {
                        None => from,
                        Some(changed) => texts.iter().position(|(t, _)| *t == changed).unwrap_or_else(|| {
                            texts.push((Cow::Owned(changed), None));
                            scan.done.push(Default::default());
                            texts.len() - 1
                        }),
                    };
                    scan.done[from][node.step as usize] = Some(to);
                    to
                }
            };
            scan.slots[slot] = to;
        }
        Some(texts)
    }

    /// The chains of `plan` whose output is text `i` of the last `texts`.
    fn chains_ending<'s>(&'s self, plan: &'s Plan, i: usize, scan: &'s Scan) -> impl Iterator<Item = &'s Chain> {
        plan.chains.iter().map(|&c| &self.chains[c]).filter(move |c| scan.slots[c.slot] == i)
    }

    /// Whether the prefilter flags any text a chain of `plan` ends at.
    fn flags_any(&self, plan: &Plan, texts: &[(Cow<str>, Option<Transforms>)], scan: &Scan) -> bool {
        texts.iter().enumerate().any(|(i, (text, _))| {
            self.chains_ending(plan, i, scan).next().is_some() && self.prefilter.is_match(text.as_ref())
        })
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
pub struct Detector {
    current: Arc<RuleSet>,
    /// Verdicts of `current` on recent field values. Each worker has its own clone, so the
    /// lock is never contended; a detector shared between threads skips it when it is taken.
    recent: Mutex<Recent>,
    seen: u64,
    threshold: u32,
    shared: Arc<Shared>,
    _watcher: Option<Arc<Mutex<notify::RecommendedWatcher>>>,
}

/// A clone starts with no remembered verdicts.
impl Clone for Detector {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
            recent: Mutex::default(),
            seen: self.seen,
            threshold: self.threshold,
            shared: self.shared.clone(),
            _watcher: self._watcher.clone(),
        }
    }
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
        Ok(Self { current: set, recent: Mutex::default(), seen: 0, threshold, shared, _watcher: watcher })
    }

    /// Picks up a reloaded rule set, if there is one.
    pub fn refresh(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen {
            if let Ok(latest) = self.shared.latest.lock() {
                self.current = latest.clone();
                self.recent = Mutex::default();
            }
            self.seen = g;
        }
    }

    pub fn tags(&self, ev: &Event) -> AnomalyTags {
        let mut recent = self.recent.try_lock().ok();
        let v = self.current.evaluate_with(ev, recent.as_deref_mut());
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

    fn rule(id: &str, targets: &str, transforms: &str, pattern: &str) -> String {
        format!(
            "[[rule]]\nid = \"{id}\"\nname = \"n\"\nfamily = \"f\"\nseverity = \"LOW\"\nscore = 1\n\
             targets = [{targets}]\ntransforms = [{transforms}]\npatterns = ['{pattern}']\n"
        )
    }

    /// The rules, compiled from one file.
    fn rule_set(rules: &[String]) -> RuleSet {
        RuleSet::from_sources(&[("t.toml".into(), rules.concat())]).expect("rules")
    }

    /// The ids of the rules matching an event with only this query.
    fn query_rules(set: &RuleSet, query: &str) -> Vec<String> {
        set.evaluate(&Event { query: Some(query.into()), ..Event::default() }).rules
    }

    #[test]
    fn patterns_see_only_their_own_chain_and_targets() {
        let set = rule_set(&[
            rule("exact", "\"query\"", "", "union"),
            rule("folded", "\"query\"", "\"lowercase\"", "union"),
            rule("path-only", "\"path\"", "\"lowercase\"", "union"),
            // Two chains that share `url_decode`; only one removes the NUL.
            rule("decoded", "\"query\"", "\"url_decode\", \"lowercase\"", "^a\\x00b$"),
            rule("no-nul", "\"query\"", "\"url_decode\", \"remove_nulls\", \"lowercase\"", "^ab$"),
            rule("no-nul-raw", "\"query\"", "\"url_decode\", \"remove_nulls\"", "^ab$"),
            rule("both", "\"path\", \"query\"", "", "union"),
        ]);
        let rules = |query: &str| query_rules(&set, query);
        // Lowercasing changes the text: the untransformed pattern must not see its output.
        assert_eq!(rules("UNION"), ["folded"]);
        // Both chains give the same text, scanned once, and both rules match it.
        assert_eq!(rules("union"), ["exact", "folded", "both"]);
        assert_eq!(rules("%41%00B"), ["decoded", "no-nul"]);
        assert_eq!(rules("%61%00b"), ["decoded", "no-nul", "no-nul-raw"]);
        let ev = Event { path: Some("/UNION".into()), ..Event::default() };
        assert_eq!(set.evaluate(&ev).rules, ["path-only"]);
        // A rule matching two fields is reported once, where it matched first.
        let ev = Event { path: Some("/union".into()), query: Some("union".into()), ..Event::default() };
        let v = set.evaluate(&ev);
        assert_eq!(v.rules, ["exact", "folded", "path-only", "both"]);
        let places: Vec<_> = v.matches.iter().map(|(r, t, _)| (r.as_str(), *t)).collect();
        let (path, query) = (Target::Path, Target::Query);
        assert_eq!(places, [("both", path), ("path-only", path), ("exact", query), ("folded", query)]);
    }

    /// Every field of `ev` set to `value`, as the rules read them.
    fn everywhere(value: &str) -> Event {
        let mut ev = Event {
            method: Some(value.into()),
            path: Some(value.into()),
            query: Some(value.into()),
            user_agent: Some(value.into()),
            referer: Some(value.into()),
            body: Some(value.into()),
            ..Event::default()
        };
        ev.headers.insert("x-test".into(), value.into());
        ev
    }

    /// The built-in rules with their gate, and without it (every value through every chain).
    fn gated_and_not() -> &'static (RuleSet, RuleSet) {
        static SETS: std::sync::LazyLock<(RuleSet, RuleSet)> = std::sync::LazyLock::new(|| {
            let mut ungated = RuleSet::load(None).expect("rules");
            ungated.gated = false;
            (RuleSet::load(None).expect("rules"), ungated)
        });
        &SETS
    }

    #[test]
    fn the_gate_changes_no_verdict() {
        let (gated, ungated) = gated_and_not();
        assert!(gated.gated);
        let mut values: Vec<String> = gated
            .rules
            .iter()
            .flat_map(|r| r.examples.iter().chain(&r.counter_examples))
            .flat_map(|v| {
                let mixed: String =
                    v.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
                [v.clone(), v.to_ascii_uppercase(), mixed]
            })
            .collect();
        values.extend(
            ["/products", "Mozilla/5.0 (X11; Linux x86_64)", "SELECT", "UnIoN SeLeCt 1", "/.ENV"].map(String::from),
        );
        let mut flagged = 0;
        for v in &values {
            let ev = everywhere(v);
            let verdict = gated.evaluate(&ev);
            flagged += usize::from(!verdict.rules.is_empty());
            assert_eq!(verdict, ungated.evaluate(&ev), "{v:?}");
        }
        // The values are mostly attacks: the comparison is not between two empty verdicts.
        assert!(flagged > values.len() / 2, "{flagged} of {}", values.len());
    }

    proptest::proptest! {
        #[test]
        fn the_gate_changes_no_verdict_on_any_value(
            v in r"([a-zA-Z0-9 ;'&%+*/<>.=()-]|SELECT|UNION|script|ETC/PASSWD|\.\./|%2[eE]|%3[cC]|&lt;|/\*\*/){0,12}"
        ) {
            let (gated, ungated) = gated_and_not();
            let ev = everywhere(&v);
            proptest::prop_assert_eq!(gated.evaluate(&ev), ungated.evaluate(&ev));
        }
    }

    #[test]
    fn a_chain_that_reads_case_after_lowercasing_is_run_in_full() {
        // Entity names are read as written: `&LT;` is decoded only once lowercased, so the
        // first pass may not leave lowercasing out of this chain.
        let set = rule_set(&[rule("entity", "\"query\"", "\"lowercase\", \"html_entity_decode\"", "<x")]);
        assert!(set.gated);
        assert_eq!(query_rules(&set, "&LT;x"), ["entity"]);
        assert_eq!(query_rules(&set, "&lt;x"), ["entity"]);
    }

    #[test]
    fn a_pattern_that_turns_case_folding_off_goes_without_the_gate() {
        // On lowercased text `(?-i)abc` matches "ABC"; a case-folding prefilter would not see it
        // in "ABC" (the flag wins), so the gate is off for such a set.
        let set = rule_set(&[rule("strict", "\"query\"", "\"lowercase\"", "(?-i)abc")]);
        assert!(!set.gated);
        assert_eq!(query_rules(&set, "ABC"), ["strict"]);
        assert!(!turns_a_flag_off(r"\(?-"));
        assert!(turns_a_flag_off("x(?i-u:y)"));
        assert!(turns_a_flag_off(r"\\(?-i)y"));
        assert!(!turns_a_flag_off("(?i)y(?:z-)"));
    }

    #[test]
    fn remembered_verdicts_equal_fresh_ones() {
        let set = RuleSet::load(None).expect("rules");
        let values = [
            "/products",
            "id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            "/../../etc/passwd",
            "sqlmap/1.7.2#stable",
            "Mozilla/5.0 (X11; Linux x86_64)",
            "<script>alert(1)</script>",
            "q=union+station+select+seats",
            "() { :; }; /bin/bash -c id",
        ];
        // More distinct values than slots, so slots are taken over, and the same text in
        // different fields, where different rules apply.
        let events: Vec<Event> = (0..3 * RECENT_SLOTS)
            .map(|i| {
                let pick = |k: usize| values[(i / k) % values.len()].to_string();
                Event {
                    method: Some("GET".into()),
                    path: Some(if i % 3 == 0 { format!("/item/{i}") } else { pick(1) }),
                    query: Some(pick(3)),
                    user_agent: Some(pick(5)),
                    referer: Some(pick(7)),
                    ..Event::default()
                }
            })
            .collect();
        let mut recent = Recent::default();
        let mut flagged = 0;
        for ev in events.iter().chain(&events) {
            let fresh = set.evaluate(ev);
            flagged += usize::from(!fresh.rules.is_empty());
            assert_eq!(set.evaluate_with(ev, Some(&mut recent)), fresh, "{ev:?}");
        }
        assert!(flagged > events.len(), "{flagged}");
        let kept = recent.slots.iter().flatten().count();
        assert!(kept > values.len() * 4 && kept < RECENT_SLOTS, "{kept}");
    }

    #[test]
    fn classes_and_boundaries_are_ascii() {
        let set = rule_set(&[
            rule("word", "\"query\"", "", "\\bscript\\b"),
            rule("letters", "\"query\"", "", "^\\w+$"),
            rule("unicode", "\"query\"", "", "(?u)^\\w+$"),
        ]);
        let rules = |query: &str| query_rules(&set, query);
        // A non-ASCII letter is not a word byte, so `\b` holds after it; `(?u)` sees a letter.
        assert_eq!(rules("\u{1059a}script"), ["word", "unicode"]);
        assert_eq!(rules("script"), ["word", "letters", "unicode"]);
        assert_eq!(rules("café"), ["unicode"]);
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
