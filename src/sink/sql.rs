//! The search query language translated to a ClickHouse `WHERE` clause, for query mode.
//!
//! The same grammar users write against the local index: `field:value`, `field:"a phrase"`,
//! ranges `field:[a TO b]` and `field:{a TO b}`, comparisons `field:>=500`, `AND`, `OR`,
//! `NOT`/`-`, parentheses, bare words and phrases (over the raw line and message), and
//! `client_ip:203.0.113.0/24`. Terms are ANDed by default. Every value becomes a quoted
//! literal; nothing from the query reaches the SQL unquoted.

/// Columns searched as one exact value.
const KEYWORDS: &[&str] =
    &["method", "route", "path", "host", "client_ip", "source", "format", "level", "severity", "agent", "id"];
/// Numeric columns.
const NUMBERS: &[&str] = &["status", "duration_ms", "bytes_sent", "anomaly_score"];
/// Columns searched for words inside them.
const TEXTS: &[&str] = &["raw", "message", "user_agent", "referer", "query", "parse_error"];

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    /// A term: optional field and its value text (quotes kept for phrases).
    Term(Option<String>, String),
}

fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            toks.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::Close);
            i += 1;
        } else if c == '-' && chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) && toks.last() != Some(&Tok::Not) {
            toks.push(Tok::Not);
            i += 1;
        } else {
            // A word, a phrase, or field:value where value may be quoted or a bracketed range.
            let start = i;
            let mut field = None;
            if c != '"' {
                while i < chars.len() && !chars[i].is_whitespace() && !"():\"".contains(chars[i]) {
                    i += 1;
                }
                if i < chars.len() && chars[i] == ':' {
                    field = Some(chars[start..i].iter().collect::<String>());
                    i += 1;
                } else {
                    let word: String = chars[start..i].iter().collect();
                    toks.push(match word.as_str() {
                        "AND" | "&&" => Tok::And,
                        "OR" | "||" => Tok::Or,
                        "NOT" => Tok::Not,
                        _ => Tok::Term(None, word),
                    });
                    continue;
                }
            }
            let vstart = i;
            match chars.get(i) {
                Some('"') => {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                    if i >= chars.len() {
                        return Err("a phrase is missing its closing quote".into());
                    }
                    i += 1;
                }
                Some('[' | '{') => {
                    while i < chars.len() && chars[i] != ']' && chars[i] != '}' {
                        i += 1;
                    }
                    if i >= chars.len() {
                        return Err("a range is missing its closing ] or }".into());
                    }
                    i += 1;
                }
                _ => {
                    while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ')' {
                        i += 1;
                    }
                }
            }
            let value: String = chars[vstart.min(chars.len())..i.min(chars.len())].iter().collect();
            if field.is_some() && value.is_empty() {
                return Err(format!("`{}:` has no value", field.unwrap_or_default()));
            }
            toks.push(Tok::Term(field, value));
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn or(&mut self) -> Result<String, String> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(" OR ")) })
    }

    fn and(&mut self) -> Result<String, String> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.at += 1;
                    parts.push(self.unary()?);
                }
                Some(Tok::Open | Tok::Not | Tok::Term(..)) => parts.push(self.unary()?),
                _ => break,
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(" AND ")) })
    }

    fn unary(&mut self) -> Result<String, String> {
        match self.toks.get(self.at).cloned() {
            Some(Tok::Not) => {
                self.at += 1;
                Ok(format!("NOT {}", self.unary()?))
            }
            Some(Tok::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("a parenthesis is not closed".into());
                }
                self.at += 1;
                Ok(format!("({inner})"))
            }
            Some(Tok::Term(field, value)) => {
                self.at += 1;
                term(field.as_deref(), &value)
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("the query ends too early".into()),
        }
    }
}

fn unquote(v: &str) -> String {
    let inner = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

fn number(field: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    if v == "*" {
        return Ok(String::new());
    }
    v.parse::<f64>().map(|n| n.to_string()).map_err(|_| format!("`{field}` needs a number, got {v:?}"))
}

fn text_match(col: &str, v: &str) -> String {
    format!("positionCaseInsensitiveUTF8({col}, {}) > 0", quote(&unquote(v)))
}

fn cidr(v: &str) -> Result<Option<String>, String> {
    let Some((addr, bits)) = v.split_once('/') else { return Ok(None) };
    let bad = || format!("{v:?} is not an IPv4 CIDR block like 203.0.113.0/24");
    let a: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(bad)?;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    let lo = u32::from(a) & mask;
    Ok(Some(format!("IPv4StringToNum(client_ip) BETWEEN {lo} AND {}", lo | !mask)))
}

fn term(field: Option<&str>, v: &str) -> Result<String, String> {
    let Some(field) = field else {
        return Ok(format!("({} OR {})", text_match("raw", v), text_match("message", v)));
    };
    if let Some(range) = v.strip_prefix(['[', '{']) {
        let inclusive_lo = v.starts_with('[');
        let inclusive_hi = v.ends_with(']');
        let body = range.trim_end_matches([']', '}']);
        let (lo, hi) =
            body.split_once(" TO ").ok_or_else(|| format!("`{field}:{v}` is not a range like [500 TO 599]"))?;
        let col = column(field)?;
        let bound = |x: &str| if NUMBERS.contains(&field) { number(field, x) } else { Ok(quote(&unquote(x.trim()))) };
        let mut parts = Vec::new();
        let (lo, hi) = (bound(lo)?, bound(hi)?);
        if !lo.is_empty() && lo != "'*'" {
            parts.push(format!("{col} {} {lo}", if inclusive_lo { ">=" } else { ">" }));
        }
        if !hi.is_empty() && hi != "'*'" {
            parts.push(format!("{col} {} {hi}", if inclusive_hi { "<=" } else { "<" }));
        }
        return Ok(if parts.is_empty() { "1".into() } else { format!("({})", parts.join(" AND ")) });
    }
    for op in [">=", "<=", ">", "<"] {
        if let Some(rest) = v.strip_prefix(op) {
            let col = column(field)?;
            let val = if NUMBERS.contains(&field) { number(field, rest)? } else { quote(&unquote(rest)) };
            return Ok(format!("{col} {op} {val}"));
        }
    }
    match field {
        "client_ip" => {
            if let Some(sql) = cidr(&unquote(v))? {
                return Ok(sql);
            }
            Ok(format!("client_ip = {}", quote(&unquote(v))))
        }
        "anomalies" | "family" | "families" => {
            let col = if field == "anomalies" { "anomalies" } else { "families" };
            Ok(format!("has({col}, {})", quote(&unquote(v))))
        }
        "attack" | "unparsed" => {
            let yes = match unquote(v).as_str() {
                "true" => true,
                "false" => false,
                other => return Err(format!("`{field}` is true or false, got {other:?}")),
            };
            Ok(match (field, yes) {
                ("attack", y) => format!("attack = {}", u8::from(y)),
                (_, true) => "parse_error != ''".into(),
                (_, false) => "parse_error = ''".into(),
            })
        }
        f if NUMBERS.contains(&f) => {
            let n = number(f, v)?;
            Ok(if n.is_empty() { format!("{f} IS NOT NULL") } else { format!("{f} = {n}") })
        }
        f if KEYWORDS.contains(&f) => {
            Ok(if v == "*" { format!("{f} != ''") } else { format!("{f} = {}", quote(&unquote(v))) })
        }
        f if TEXTS.contains(&f) => Ok(text_match(f, v)),
        other => Err(format!("unknown field {other:?}")),
    }
}

fn column(field: &str) -> Result<&str, String> {
    KEYWORDS
        .iter()
        .chain(NUMBERS)
        .find(|f| **f == field)
        .copied()
        .ok_or_else(|| format!("`{field}` cannot be a range; ranges work on status, duration_ms, bytes_sent, anomaly_score and keyword fields"))
}

/// The `WHERE` condition of a query; `1` for an empty query or `*`.
pub fn condition(q: &str) -> Result<String, String> {
    let q = q.trim();
    if q.is_empty() || q == "*" {
        return Ok("1".into());
    }
    let mut p = Parser { toks: lex(q)?, at: 0 };
    let sql = p.or()?;
    if p.at < p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.at]));
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_language_becomes_sql() {
        assert_eq!(condition("*").unwrap(), "1");
        assert_eq!(condition("status:500").unwrap(), "status = 500");
        assert_eq!(condition("status:[500 TO 599]").unwrap(), "(status >= 500 AND status <= 599)");
        assert_eq!(condition("duration_ms:>1000 AND method:POST").unwrap(), "(duration_ms > 1000 AND method = 'POST')");
        assert_eq!(
            condition("route:\"/api/users/:id\" OR -status:200").unwrap(),
            "(route = '/api/users/:id' OR NOT status = 200)"
        );
        assert_eq!(
            condition("client_ip:10.0.0.0/8").unwrap(),
            "IPv4StringToNum(client_ip) BETWEEN 167772160 AND 184549375"
        );
        assert_eq!(condition("family:sqli attack:true").unwrap(), "(has(families, 'sqli') AND attack = 1)");
        assert_eq!(
            condition("timeout").unwrap(),
            "(positionCaseInsensitiveUTF8(raw, 'timeout') > 0 OR positionCaseInsensitiveUTF8(message, 'timeout') > 0)"
        );
    }

    #[test]
    fn values_are_always_quoted_and_mistakes_are_explained() {
        assert_eq!(condition("route:\"x' OR 1=1 --\"").unwrap(), "route = 'x\\' OR 1=1 --'");
        assert!(condition("status:abc").unwrap_err().contains("needs a number"));
        assert!(condition("colour:red").unwrap_err().contains("unknown field"));
        assert!(condition("(status:500").unwrap_err().contains("not closed"));
        assert!(condition("route:\"open").unwrap_err().contains("closing quote"));
    }
}
