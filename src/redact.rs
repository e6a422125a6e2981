//! Redaction: the one gate between parsed events and anything that writes.
//!
//! A key design decision: only this module can build a [`Redacted`], and the index, the API
//! and every later sink accept nothing else, so an unredacted event cannot reach disk by
//! accident. Redaction works in two passes over every text field, the raw line included:
//!
//! 1. key-value pairs whose key is sensitive (`password=`, `"apiKey": "..."`,
//!    `Authorization: ...`), in query strings, JSON, logfmt, cookies and headers, with keys
//!    compared after normalising case and `camelCase`/`snake_case`/`kebab-case` separators;
//! 2. values that are secrets wherever they stand: Luhn-valid card numbers, US SSNs, JWTs,
//!    `Bearer` tokens, AWS access keys, PEM private keys and `user:password@` in URLs,
//!    found by one multi-pattern regex. It reads the raw line first; a field that is a part
//!    of a line where it finds nothing is not read again (see [`Redactor::redact`]).

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use hmac::{Hmac, KeyInit, Mac};
use regex_automata::Input;
use regex_automata::meta::Regex;
use sha2::Sha256;

use crate::event::{AnomalyTags, Event};

/// The replacement text when secrets are not hashed.
pub const REDACTED: &str = "[REDACTED]";

/// Words that make a key sensitive when its normalised form contains them.
const SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "encryptionkey",
    "secretkey",
    "signingkey",
    "creditcard",
    "cardnumber",
    "ccnumber",
    "cvv",
    "ssn",
    "authorization",
    "cookie",
    "sessionid",
    "session",
    "credential",
    "pin",
];

/// Keys sensitive only as they are: `keyboard=` and `passage=` are not.
const EXACT_KEYS: &[&str] = &["key", "pass", "pwd"];

/// Keys whose whole value (to the end of the line or quote) is secret, spaces included.
const WHOLE_VALUE_KEYS: &[&str] = &["authorization", "proxyauthorization", "cookie", "setcookie"];

/// How secrets are replaced.
#[derive(Debug, Clone)]
pub enum Replacement {
    /// `[REDACTED]`.
    Fixed,
    /// `[REDACTED:<8 hex>]`, a keyed hash prefix: equal secrets stay correlatable without
    /// being revealed, and without the key nobody can test guesses against them.
    KeyedHash(Vec<u8>),
}

/// An event that has been through the [`Redactor`]. The only type that may be written.
#[derive(Debug, Clone)]
pub struct Redacted(Event);

impl Redacted {
    pub fn event(&self) -> &Event {
        &self.0
    }

    /// Tags set by the rules stage; they are rule ids and scores, never log text.
    pub fn tag(&mut self, tags: AnomalyTags) {
        self.0.anomalies = tags.rules;
        self.0.families = tags.families;
        self.0.anomaly_score = tags.score;
        self.0.severity = tags.severity;
        self.0.attack = tags.attack;
        self.0.matches = tags.matches;
    }
}

/// Value patterns, in the order of `PATTERNS`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Pattern {
    Pem,
    Jwt,
    Bearer,
    Aws,
    UrlPassword,
    Ssn,
    Card,
}

const PATTERNS: &[(Pattern, &str)] = &[
    (Pattern::Pem, r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    (Pattern::Jwt, r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    (Pattern::Bearer, r"(?i:bearer)(?:\s+|%20|\+)[A-Za-z0-9._~+/=-]{8,}"),
    (Pattern::Aws, r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"),
    // Userinfo holds no quote, bracket, brace, backslash or space (RFC 3986), so a match never
    // runs across the fields of a JSON line.
    (Pattern::UrlPassword, r#"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@"'\\<>{}\[\]|^`]+:[^/\s@"'\\<>{}\[\]|^`]+@"#),
    (Pattern::Ssn, r"[0-9]{3}-[0-9]{2}-[0-9]{4}"),
    (Pattern::Card, r"[2-6][0-9]{3}(?:[ -]?[0-9]){9,15}"),
];

/// Redacts events. Cheap to clone; built once from the configuration.
#[derive(Clone)]
pub struct Redactor {
    extra_words: Vec<String>,
    /// Every word that can make a key sensitive, built-in and configured, found in one pass:
    /// a key holding none of them (the digits of a time, `id`, `page`, most keys) is let go
    /// without a substring search per word.
    any_word: AhoCorasick,
    replacement: Replacement,
    values: Regex,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("extra_words", &self.extra_words).finish_non_exhaustive()
    }
}

impl Redactor {
    /// `extra_keys` are added to the built-in sensitive words (normalised the same way).
    pub fn new(extra_keys: &[String], replacement: Replacement) -> Self {
        let patterns: Vec<&str> = PATTERNS.iter().map(|(_, p)| *p).collect();
        let values = Regex::new_many(&patterns).expect("built-in redaction patterns compile");
        let extra_words: Vec<String> = extra_keys.iter().map(|k| normalise(k)).collect();
        let words = EXACT_KEYS.iter().chain(SENSITIVE_WORDS).copied().chain(extra_words.iter().map(String::as_str));
        let any_word = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .build(words)
            .expect("a few short words make a small automaton");
        Self { extra_words, any_word, replacement, values }
    }

    /// Redacts every text field of `ev`.
    pub fn redact(&self, mut ev: Event) -> Redacted {
        // No value pattern looks past the text it matches, but for the PEM block's `$` (the end
        // of the text), and a text holding a PEM header matches in any text around it too. So
        // when no pattern matches anywhere in the line, none matches in a field that is a part
        // of it, as most fields are: those are not searched again.
        let raw = std::mem::take(&mut ev.raw);
        let in_raw = self.values.is_match(&raw);
        let search = |field: &str| in_raw || !occurs_in(raw.as_bytes(), field.as_bytes());
        for field in [
            &mut ev.path,
            &mut ev.query,
            &mut ev.referer,
            &mut ev.user_agent,
            &mut ev.message,
            &mut ev.body,
            &mut ev.request_id,
            &mut ev.client_id,
            &mut ev.user_id,
            &mut ev.host,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(clean) = self.scrub_searching(field, search(field)) {
                *field = clean;
            }
        }
        for (name, value) in ev.headers.iter_mut() {
            if name.eq_ignore_ascii_case("cookie") {
                *value = self.redact_cookies(value);
            } else if self.is_sensitive_key(&normalise(name)) {
                *value = self.replacement_for(value);
            } else if let Some(clean) = self.scrub_searching(value, search(value)) {
                *value = clean;
            }
        }
        ev.raw = match self.scrub_searching(&raw, in_raw) {
            Some(clean) => {
                // The timestamp may have moved: the whole line is indexed.
                ev.time_in_raw = None;
                clean
            }
            None => raw,
        };
        Redacted(ev)
    }

    /// The redacted text, or `None` when nothing in `text` is secret (the common case, which
    /// then costs no allocation).
    pub fn scrub(&self, text: &str) -> Option<String> {
        self.scrub_searching(text, true)
    }

    /// [`Redactor::scrub`], where `values` says whether a value pattern may match in `text`;
    /// the sensitive keys' values are looked for either way.
    fn scrub_searching(&self, text: &str, values: bool) -> Option<String> {
        let mut spans = self.key_value_spans(text);
        // A rejected candidate (a long number that fails Luhn) is retried one byte later, so
        // a card glued behind other digits (`%204539...`) is still found.
        let mut at = 0;
        while values && let Some(m) = self.values.search(&Input::new(text).range(at..)) {
            let (pattern, _) = PATTERNS[m.pattern().as_usize()];
            let (start, mut end) = (m.start(), m.end());
            let accepted = match pattern {
                Pattern::Card => match card_end(text, start, end) {
                    Some(e) => {
                        end = e;
                        true
                    }
                    None => false,
                },
                Pattern::Ssn => bounded(text, start, end) && plausible_ssn(&text[start..end]),
                Pattern::Aws => bounded(text, start, end),
                _ => true,
            };
            if !accepted {
                at = start + 1;
                continue;
            }
            at = end;
            match pattern {
                // Keep the scheme and user, hide only the password.
                Pattern::UrlPassword => {
                    let colon = start + text[start..end].rfind(':').unwrap_or(0);
                    spans.push((colon + 1, end - 1));
                    // The user part stays, so look into it too (a card number, a key); the
                    // next URL password can only start after this one's `://`.
                    at = start + text[start..end].find("://").map_or(end - start, |i| i + 3);
                }
                Pattern::Bearer => spans.push((start + bearer_token_start(&text[start..end]), end)),
                _ => spans.push((start, end)),
            }
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (start, end) in spans {
            if end <= pos {
                continue;
            }
            let start = start.max(pos);
            out.push_str(&text[pos..start]);
            if start < end {
                out.push_str(&self.replacement_for(&text[start..end]));
            }
            pos = end;
        }
        out.push_str(&text[pos..]);
        Some(out)
    }

    /// A `Cookie` header, cookie by cookie: a value goes when its name is sensitive or when it
    /// looks like a token (session ids, JWTs: anything long without markup or spaces). Names,
    /// and short or structured values, stay (scrubbed like any text): that is where attacks
    /// hide, and the rules must see them.
    fn redact_cookies(&self, header: &str) -> String {
        let mut out = String::with_capacity(header.len());
        for (i, part) in header.split(';').enumerate() {
            if i > 0 {
                out.push(';');
            }
            match part.split_once('=') {
                Some((name, value)) if self.is_sensitive_key(&normalise(name)) || token_like(value) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&self.replacement_for(value));
                }
                _ => out.push_str(self.scrub(part).as_deref().unwrap_or(part)),
            }
        }
        out
    }

    fn replacement_for(&self, secret: &str) -> String {
        match &self.replacement {
            Replacement::Fixed => REDACTED.to_string(),
            Replacement::KeyedHash(key) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(secret.as_bytes());
                let digest = mac.finalize().into_bytes();
                format!("[REDACTED:{}]", hex::encode(&digest[..4]))
            }
        }
    }

    fn is_sensitive_key(&self, norm: &str) -> bool {
        // Each test below needs one of the words inside `norm`.
        if norm.is_empty() || !self.any_word.is_match(norm) {
            return false;
        }
        EXACT_KEYS.contains(&norm)
            || SENSITIVE_WORDS.iter().any(|w| contains_word(norm, w))
            || self.extra_words.iter().any(|w| norm.contains(w.as_str()))
    }

    /// Spans of the values of sensitive `key=value` / `"key": value` / `Key: value` pairs.
    fn key_value_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let b = text.as_bytes();
        let mut spans = Vec::new();
        let mut key = String::new();
        let mut i = 0;
        while let Some(off) = memchr::memchr2(b'=', b':', &b[i..]) {
            let sep = i + off;
            i = sep + 1;
            // The key: word characters just before the separator, possibly inside quotes.
            let mut key_end = sep;
            while key_end > 0 && matches!(b[key_end - 1], b'"' | b'\'' | b' ' | b'\\') {
                key_end -= 1;
            }
            let mut key_start = key_end;
            while key_start > 0
                && (b[key_start - 1].is_ascii_alphanumeric()
                    || matches!(b[key_start - 1], b'_' | b'-' | b'.' | b'[' | b']'))
            {
                key_start -= 1;
            }
            if key_start == key_end {
                continue;
            }
            // `http://` and friends are not key-value pairs.
            if b[sep] == b':' && b.get(sep + 1) == Some(&b'/') {
                continue;
            }
            // One buffer for every key of the text: most `:` and `=` are not secrets (times,
            // URLs), and this runs on every line.
            key.clear();
            key.extend(
                text[key_start..key_end]
                    .bytes()
                    .filter(u8::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase() as char),
            );
            if !self.is_sensitive_key(&key) {
                continue;
            }
            let whole = WHOLE_VALUE_KEYS.contains(&key.as_str());
            let mut v = sep + 1;
            while v < b.len() && b[v] == b' ' {
                v += 1;
            }
            let quote = match b.get(v) {
                Some(&q @ (b'"' | b'\'')) => {
                    v += 1;
                    Some(q)
                }
                // JSON `\"` inside an already-quoted string (nested JSON in a message).
                Some(b'\\') if b.get(v + 1) == Some(&b'"') => {
                    v += 2;
                    Some(b'\\')
                }
                _ => None,
            };
            // Already redacted (a second pass, or a value we wrote): leave it whole.
            if text[v..].starts_with("[REDACTED") {
                continue;
            }
            let end = value_end(b, v, quote, whole, b[sep] == b'=');
            if end > v {
                spans.push((v, end));
                i = end;
            }
        }
        spans
    }
}

/// Whether `part` occurs in `text`, found by its first byte and a comparison: a substring
/// searcher built for a needle used once costs more than the search. After 16 places that
/// start with the same byte it gives up and says no, so a hostile line costs at most 16
/// comparisons of `part` (and `part` is then searched as it would have been).
fn occurs_in(text: &[u8], part: &[u8]) -> bool {
    let Some(&first) = part.first() else {
        return true;
    };
    memchr::memchr_iter(first, text).take(16).any(|i| text[i..].starts_with(part))
}

fn value_end(b: &[u8], start: usize, quote: Option<u8>, whole: bool, equals: bool) -> usize {
    let mut j = start;
    while j < b.len() {
        let c = b[j];
        match quote {
            Some(b'\\') if c == b'\\' && b.get(j + 1) == Some(&b'"') => return j,
            Some(q) if q != b'\\' && c == b'\\' => j += 1,
            Some(q) if c == q => return j,
            Some(_) => {}
            None if c == b'\n' || c == b'\r' || c == b'"' => return j,
            None if whole => {}
            None if matches!(c, b'&' | b' ' | b'\t' | b';' | b',' | b'}' | b']' | b')') => return j,
            None if !equals && c == b'\'' => return j,
            None => {}
        }
        j += 1;
    }
    b.len().min(j)
}

/// Whether `word` occurs in `norm` at a point where it is not obviously part of a longer
/// word: `sessionid` and `x_session` yes, but `pin` must not hit `shipping` or `spinner`.
fn contains_word(norm: &str, word: &str) -> bool {
    match word {
        "pin" | "ssn" | "cvv" => norm == word || norm.ends_with(word) && norm.len() <= word.len() + 4,
        "session" => norm == "session" || norm.ends_with("session"),
        _ => norm.contains(word),
    }
}

/// Lowercase letters and digits only.
pub fn normalise(key: &str) -> String {
    key.bytes().filter(u8::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase() as char).collect()
}

/// True when the match is not glued to other word characters on either side; a
/// percent-escape such as `%20` before it counts as a separator.
fn bounded(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let escaped =
        start >= 3 && b[start - 3] == b'%' && b[start - 2].is_ascii_hexdigit() && b[start - 1].is_ascii_hexdigit();
    (start == 0 || !word(b[start - 1]) || escaped) && (end == b.len() || !word(b[end]))
}

/// Whether a cookie value looks like a token: eight or more characters of the alphabets
/// tokens are written in (base64, hex, URL-encoded, JWT), nothing else, and no encoded angle
/// bracket (a token never holds markup; a payload does).
fn token_like(value: &str) -> bool {
    let v = value.trim().trim_matches('"');
    let markup = || v.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"%3c") || w.eq_ignore_ascii_case(b"%3e"));
    v.len() >= 8 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=_.%:-~".contains(&b)) && !markup()
}

/// Offset of the token in `Bearer <token>`, past the separator (spaces, `+` or `%20`).
fn bearer_token_start(m: &str) -> usize {
    let rest = &m[6..];
    let sep = if rest.starts_with("%20") { 3 } else { rest.len() - rest.trim_start_matches([' ', '\t', '+']).len() };
    6 + sep
}

/// Where a card number starting at `start` ends: the longest run of the match's digits
/// (13 to 19) that stands alone and passes Luhn. The regex takes as many digits as it can, and
/// a card followed by other digit groups (`4111 1111 1111 1111 2024`) is still found.
fn card_end(text: &str, start: usize, end: usize) -> Option<usize> {
    let b = text.as_bytes();
    // From the longest run down: each end just after a digit, while 13 or more digits remain.
    let mut digits = b[start..end].iter().filter(|c| c.is_ascii_digit()).count();
    let mut e = end;
    while digits >= 13 {
        if b[e - 1].is_ascii_digit() {
            if bounded(text, start, e) && luhn(&text[start..e]) {
                return Some(e);
            }
            digits -= 1;
        }
        e -= 1;
    }
    None
}

fn luhn(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.bytes().filter(u8::is_ascii_digit).map(|c| u32::from(c - b'0')).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum.is_multiple_of(10)
}

fn plausible_ssn(s: &str) -> bool {
    let area = &s[..3];
    area != "000" && area != "666" && !area.starts_with('9') && &s[4..6] != "00" && &s[7..] != "0000"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(&["x-internal".to_string()], Replacement::Fixed)
    }

    fn scrub(s: &str) -> String {
        r().scrub(s).unwrap_or_else(|| s.to_string())
    }

    #[test]
    fn sensitive_keys_in_every_style() {
        assert_eq!(scrub("/login?user=bob&password=hunter2&x=1"), "/login?user=bob&password=[REDACTED]&x=1");
        assert_eq!(scrub(r#"{"apiKey":"k-123","n":1}"#), r#"{"apiKey":"[REDACTED]","n":1}"#);
        assert_eq!(scrub("access_token=abc refresh-token=def"), "access_token=[REDACTED] refresh-token=[REDACTED]");
        assert_eq!(
            scrub(r#"{"user":{"credit_card":"4111 1111 1111 1111"}}"#),
            r#"{"user":{"credit_card":"[REDACTED]"}}"#
        );
        assert_eq!(scrub("Authorization: Basic dXNlcjpwYXNz"), "Authorization: [REDACTED]");
        assert_eq!(scrub("Cookie: sid=1; theme=dark"), "Cookie: [REDACTED]");
        // In the headers of an event, cookie by cookie: tokens go, markup stays for the rules.
        let ev = Event {
            headers: [(
                "Cookie".to_string(),
                "sid=abc; theme=dark; _gh_sess=Zm9vYmFyYmF6cXV4; x=<script>alert(1)</script>; token=12; p=12%3Cb%3E"
                    .to_string(),
            )]
            .into(),
            ..Event::default()
        };
        assert_eq!(
            r().redact(ev).event().headers["Cookie"],
            "sid=abc; theme=dark; _gh_sess=[REDACTED]; x=<script>alert(1)</script>; token=[REDACTED]; p=12%3Cb%3E"
        );
        assert_eq!(scrub("x-internal=zzz"), "x-internal=[REDACTED]");
        assert_eq!(scrub(r#"msg="{\"password\":\"p4ss\"}""#), r#"msg="{\"password\":\"[REDACTED]\"}""#);
        assert_eq!(scrub(r#"{"ssn": 123456789}"#), r#"{"ssn": [REDACTED]}"#);
        assert_eq!(scrub("pin=[REDACTED]"), "pin=[REDACTED]", "a second pass changes nothing");
    }

    #[test]
    fn innocent_keys_are_left_alone() {
        for s in ["shipping=fast&spinner=1", "monkey=1", "http://example.com/a?page=2", "13:55:36 -0700"] {
            assert_eq!(r().scrub(s), None, "{s}");
        }
    }

    /// Found by the `redact` fuzz target: a URL's "password" ran across quotes into a
    /// redacted JSON value, so a second pass redacted more than the first.
    #[test]
    fn a_second_pass_changes_nothing() {
        for text in [
            r#"{"u":"http://whoami:80","entryccnumbere":"web[client \"19:"root@file"}"#,
            r#"ldap://1.2.3.4:x","k":"v","password":"a b"@host"#,
            "https://bob:s3cret@example.com/ and again https://bob:[REDACTED]@example.com/",
            // A Luhn-valid run followed by more digit groups.
            "327.0 259 1846 -% 2365 1408 74 4442 2365 4441408 47 320 432",
            // Found by the fuzzer: a card number in the user part of a URL with a password.
            "http://play4444444444444-84444com::::x::::pw@host/",
        ] {
            let once = scrub(text);
            assert_eq!(scrub(&once), once, "{text}");
        }
        assert_eq!(scrub("https://bob:s3cret@example.com/x"), "https://bob:[REDACTED]@example.com/x");
    }

    #[test]
    fn secret_values_anywhere() {
        assert_eq!(scrub("paid with 4111-1111-1111-1111 ok"), "paid with [REDACTED] ok");
        assert_eq!(scrub("note=card%204539578763621486&x"), "note=card%20[REDACTED]&x");
        assert_eq!(scrub("x=1234567890123 4539578763621486"), "x=1234567890123 [REDACTED]");
        assert_eq!(scrub("h: Bearer%20abcdefghijklmnop"), "h: Bearer%20[REDACTED]");
        assert_eq!(scrub("card 4111111111111112"), "card 4111111111111112", "not Luhn-valid");
        assert_eq!(scrub("card 4111 1111 1111 1111 2024 ok"), "card [REDACTED] 2024 ok", "followed by a year");
        assert_eq!(scrub("ts 1700000000123"), "ts 1700000000123", "epoch millis are not cards");
        assert_eq!(scrub("ssn 078-05-1120."), "ssn [REDACTED].");
        assert_eq!(scrub("h: Bearer abcdefghijklmnop"), "h: Bearer [REDACTED]");
        assert_eq!(scrub("t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_abc"), "t=[REDACTED]");
        assert_eq!(scrub("key AKIAIOSFODNN7EXAMPLE used"), "key [REDACTED] used");
        assert_eq!(scrub("https://bob:s3cret@db.example.com/x"), "https://bob:[REDACTED]@db.example.com/x");
        assert_eq!(
            scrub("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- tail"),
            "[REDACTED] tail"
        );
    }

    #[test]
    fn keyed_hash_correlates_without_revealing() {
        let h = Redactor::new(&[], Replacement::KeyedHash(b"k".to_vec()));
        let a = h.scrub("password=hunter2").unwrap();
        let b = h.scrub("password=hunter2").unwrap();
        let c = h.scrub("password=other").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("password=[REDACTED:") && !a.contains("hunter2"));
    }

    #[test]
    fn redacts_every_field_of_an_event() {
        let mut ev = Event { raw: "GET /x?token=abc".into(), query: Some("token=abc".into()), ..Event::default() };
        ev.headers.insert("x-api-key".into(), "k1".into());
        ev.headers.insert("accept".into(), "text/html".into());
        let red = r().redact(ev);
        let e = red.event();
        assert_eq!(e.raw, "GET /x?token=[REDACTED]");
        assert_eq!(e.query.as_deref(), Some("token=[REDACTED]"));
        assert_eq!(e.headers["x-api-key"], REDACTED);
        assert_eq!(e.headers["accept"], "text/html");
    }

    /// The key test as it was written before the one-pass check of the words: a substring
    /// search per word.
    fn is_sensitive_key_by_words(extra_words: &[String], norm: &str) -> bool {
        !norm.is_empty()
            && (EXACT_KEYS.contains(&norm)
                || SENSITIVE_WORDS.iter().any(|w| contains_word(norm, w))
                || extra_words.iter().any(|w| norm.contains(w.as_str())))
    }

    proptest::proptest! {
        /// Fields that are parts of the line, and fields that are not, come out as each
        /// scrubbed alone, whether or not the line holds a value pattern.
        #[test]
        fn each_field_is_redacted_as_if_scrubbed_alone(
            raw in r"([ /?=:aeB14-]{0,6}(Bearer abcdefgh12|4111 1111 1111 1111|123-45-6789|AKIAIOSFODNN7EXAMPLE|eyJhbGciOi\.eyJzdWIiOi\.x|https://u:pw@h|-----BEGIN RSA PRIVATE KEY-----|token=)?){0,3}",
            cuts in proptest::collection::vec((0usize..200, 0usize..200), 4),
            // Not a part of the line (but by chance): a secret whose first byte the line may
            // well hold.
            other in r"(Bearer abcdefgh12|123-45-6789|4111 1111 1111 1111|eyJhbGciOi\.eyJzdWIiOi\.x)[ /?=a1]{0,3}",
        ) {
            // Every byte above is ASCII: any cut is a char boundary.
            let part = |(a, b): (usize, usize)| {
                let (a, b) = (a.min(raw.len()), b.min(raw.len()));
                raw[a.min(b)..a.max(b)].to_string()
            };
            let ev = Event {
                raw: raw.clone(),
                path: Some(part(cuts[0])),
                query: Some(part(cuts[1])),
                user_agent: Some(part(cuts[2])),
                referer: Some(other.clone()),
                headers: [("x-forwarded-for".to_string(), part(cuts[3]))].into(),
                ..Event::default()
            };
            let r = r();
            let alone = |s: &str| r.scrub(s).unwrap_or_else(|| s.to_string());
            let red = r.redact(ev.clone());
            let e = red.event();
            proptest::prop_assert_eq!(&e.raw, &alone(&ev.raw));
            for (got, was) in [(&e.path, &ev.path), (&e.query, &ev.query), (&e.user_agent, &ev.user_agent), (&e.referer, &ev.referer)] {
                proptest::prop_assert_eq!(got.as_deref().unwrap(), alone(was.as_deref().unwrap()));
            }
            proptest::prop_assert_eq!(&e.headers["x-forwarded-for"], &alone(&ev.headers["x-forwarded-for"]));
        }

        #[test]
        fn keys_are_judged_as_word_by_word(
            norm in r"(pass|word|pwd|key|pin|ssn|cvv|session|id|token|api|secret|card|xinternal|[a-z0-9]){0,5}",
            extra in r"[a-z0-9]{0,3}",
        ) {
            let extra = vec![extra];
            let r = Redactor::new(&extra, Replacement::Fixed);
            proptest::prop_assert_eq!(r.is_sensitive_key(&norm), is_sensitive_key_by_words(&extra, &norm));
        }
    }
}
