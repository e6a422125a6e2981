//! Searching across day partitions: tantivy's query language over the event fields, a time
//! range, newest first.

use std::ops::Bound;
use std::time::Instant;

use tantivy::collector::{Collector, Count, DocSetCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, ExistsQuery, Occur, PhraseQuery, Query, QueryParser, QueryParserError, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{Order, Term};

use super::Catalog;
use super::agent::UserAgentQuery;
use super::schema::{COLUMN_ONLY, Hits, PHRASES_IN_RAW, TEXT_FIELDS};

/// The most hits one request may return.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub query: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: usize,
    pub sort: Sort,
    /// Where the previous page ended (time-ordered sorts only).
    pub cursor: Option<Cursor>,
}

/// The order of hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Newest,
    Oldest,
    /// Longest `duration_ms` first.
    Slowest,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        Some(match s {
            "" | "newest" | "timestamp:desc" | "-timestamp" => Sort::Newest,
            "oldest" | "timestamp:asc" | "timestamp" => Sort::Oldest,
            "slowest" | "duration_ms" | "duration_ms:desc" | "-duration_ms" => Sort::Slowest,
            _ => return None,
        })
    }
}

/// Where a page ended: its last timestamp and the ids already returned at that timestamp, so
/// the next page neither repeats nor skips events that share a millisecond. Events that arrive
/// later are newer than the page's upper bound and cannot shift it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    ts: i64,
    ids: Vec<String>,
}

impl Cursor {
    /// Where the page after `hits` (in time order, following `previous`) starts: after every
    /// event of the page's last millisecond, including those of earlier pages at that same
    /// millisecond. `None` for an empty page.
    pub fn following(previous: Option<&Cursor>, hits: &[serde_json::Value]) -> Option<Cursor> {
        let ts = hits.last()?.get("timestamp_ms")?.as_i64()?;
        let mut ids: Vec<String> = previous.filter(|c| c.ts == ts).map(|c| c.ids.clone()).unwrap_or_default();
        ids.extend(
            hits.iter()
                .filter(|h| h.get("timestamp_ms").and_then(serde_json::Value::as_i64) == Some(ts))
                .filter_map(|h| h.get("id").and_then(serde_json::Value::as_str).map(str::to_string)),
        );
        Some(Cursor { ts, ids })
    }

    pub fn ts(&self) -> i64 {
        self.ts
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(s: &str) -> Result<Cursor, SearchError> {
        hex::decode(s)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| SearchError::Query("`cursor` is not one this API returned".into()))
    }
}

/// Lines of a file the index is about to read again: offsets `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub fingerprint: String,
    pub from: u64,
    pub until: u64,
}

/// An event with its neighbours in the same file.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Context {
    pub before: Vec<serde_json::Value>,
    pub event: serde_json::Value,
    pub after: Vec<serde_json::Value>,
}

/// Rewrites `client_ip:203.0.113.0/24` (and IPv6 blocks) into a range over the `ip` field,
/// which tantivy's parser understands; other text is left as it is.
fn rewrite_cidr(query: &str) -> Result<String, SearchError> {
    use std::net::IpAddr;
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(i) = rest.find("client_ip:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "client_ip:".len()..];
        let end = after.find(|c: char| c.is_whitespace() || c == ')').unwrap_or(after.len());
        let value = after[..end].trim_matches('"');
        match value.split_once('/') {
            Some((addr, bits)) => {
                let bad = || SearchError::Query(format!("{value:?} is not a CIDR block like 203.0.113.0/24"));
                let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                let bits: u32 = bits.parse().map_err(|_| bad())?;
                let (lo, hi) = match addr {
                    IpAddr::V4(v4) if bits <= 32 => {
                        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                        let lo = u32::from(v4) & mask;
                        (IpAddr::from(std::net::Ipv4Addr::from(lo)), IpAddr::from(std::net::Ipv4Addr::from(lo | !mask)))
                    }
                    IpAddr::V6(v6) if bits <= 128 => {
                        let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                        let lo = u128::from(v6) & mask;
                        (IpAddr::from(std::net::Ipv6Addr::from(lo)), IpAddr::from(std::net::Ipv6Addr::from(lo | !mask)))
                    }
                    _ => return Err(bad()),
                };
                out.push_str(&format!("ip:[{lo} TO {hi}]"));
            }
            None => out.push_str(&rest[i..i + "client_ip:".len() + end]),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What [`rewrite`] needs to know of the fields.
struct Mend {
    /// Numbers kept only as columns ([`COLUMN_ONLY`]).
    columns: Vec<Field>,
    /// Text fields that keep no word positions, and their names.
    wordy: Vec<(Field, &'static str)>,
    /// Of those, the ones whose text is part of the line ([`PHRASES_IN_RAW`]).
    in_raw: Vec<Field>,
    raw: Field,
    /// Searched through `raw` and the `ua` column (see [`UserAgentQuery`]).
    user_agent: Field,
}

impl Mend {
    fn new(schema: &tantivy::schema::Schema) -> Mend {
        let field = |n: &&'static str| schema.get_field(n).ok();
        let wordy = TEXT_FIELDS
            .iter()
            .filter_map(|n| Some((field(n)?, *n)))
            .filter(|(f, _)| {
                let record = schema.get_field_entry(*f).field_type().get_index_record_option();
                record.is_some_and(|r| !r.has_positions())
            })
            .collect();
        Mend {
            columns: COLUMN_ONLY.iter().filter_map(field).collect(),
            wordy,
            in_raw: PHRASES_IN_RAW.iter().filter_map(field).collect(),
            raw: schema.get_field("raw").expect("every schema has `raw`"),
            user_agent: schema.get_field("user_agent").expect("every schema has `user_agent`"),
        }
    }
}

/// Mends what the parser gives before it is run:
/// - term queries on fields kept only as columns become ranges from the value to itself, which
///   the column answers; any other query that names such a field (a boosted term, a set) is
///   refused rather than left to find nothing;
/// - words and phrases on `user_agent` are looked for in the raw line, then in the `ua`
///   column (see [`UserAgentQuery`]); `user_agent:*` is `ua:*`, the events with a user
///   agent; other forms on it are refused;
/// - a phrase on another text field without word positions (`referer:"shop example"`, or a
///   value of several words such as `referer:shop.example`) asks for each of its words in the
///   field, and, for a field whose text is part of the line, for the phrase on `raw` (so the
///   phrase may stand elsewhere in a line whose field holds its words apart: rare, and the
///   price of not keeping those positions twice); a phrase prefix there is refused;
/// - a group of negations alone inside a query (`a AND NOT b` parses as `+a +(-b)`) means
///   everything but them, where tantivy would match nothing.
fn rewrite(query: Box<dyn Query>, m: &Mend) -> Result<Box<dyn Query>, SearchError> {
    if let Some(t) = query.downcast_ref::<TermQuery>() {
        let term = t.term();
        if term.field() == m.user_agent {
            let word = term.value().as_str().unwrap_or_default().to_string();
            let on_raw = TermQuery::new(Term::from_field_text(m.raw, &word), IndexRecordOption::Basic);
            return Ok(Box::new(UserAgentQuery::new(Box::new(on_raw), vec![word], true)));
        }
        if m.columns.contains(&term.field()) {
            return Ok(Box::new(RangeQuery::new(Bound::Included(term.clone()), Bound::Included(term.clone()))));
        }
        return Ok(query);
    }
    if let Some(p) = query.downcast_ref::<PhraseQuery>()
        && m.wordy.iter().any(|(f, _)| *f == p.field())
    {
        let terms = p.phrase_terms();
        let word = |t: &Term| Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic)) as Box<dyn Query>;
        // tantivy gives no reader for the slop; a phrase with one (`"a b"~2`) is answered by
        // its words alone, which find at least what it would.
        let exact = format!("{p:?}").ends_with("slop: 0 }");
        let on_raw: Vec<Term> =
            terms.iter().map(|t| Term::from_field_text(m.raw, t.value().as_str().unwrap_or_default())).collect();
        if p.field() == m.user_agent {
            let words = terms.iter().map(|t| t.value().as_str().unwrap_or_default().to_string()).collect();
            let candidates: Box<dyn Query> = if exact {
                Box::new(PhraseQuery::new(on_raw))
            } else {
                Box::new(BooleanQuery::new(on_raw.iter().map(|t| (Occur::Must, word(t))).collect()))
            };
            return Ok(Box::new(UserAgentQuery::new(candidates, words, exact)));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms.iter().map(|t| (Occur::Must, word(t))).collect();
        if exact && m.in_raw.contains(&p.field()) {
            clauses.push((Occur::Must, Box::new(PhraseQuery::new(on_raw))));
        }
        return Ok(Box::new(BooleanQuery::new(clauses)));
    }
    if let Some(b) = query.downcast_ref::<BooleanQuery>() {
        let mut clauses = b
            .clauses()
            .iter()
            .map(|(occur, q)| Ok((*occur, rewrite(q.box_clone(), m)?)))
            .collect::<Result<Vec<_>, SearchError>>()?;
        if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        return Ok(Box::new(BooleanQuery::with_minimum_required_clauses(clauses, b.get_minimum_number_should_match())));
    }
    let on_user_agent = || {
        SearchError::Query(
            "`user_agent` takes words or a phrase (`user_agent:curl`, `user_agent:\"Intel Mac\"`); \
             `ua:\"...\"` matches the whole user agent"
                .into(),
        )
    };
    if let Some(r) = query.downcast_ref::<RangeQuery>() {
        return if r.field() == m.user_agent { Err(on_user_agent()) } else { Ok(query) };
    }
    // tantivy gives no reader for the field either; its `Debug` names it.
    if let Some(e) = query.downcast_ref::<ExistsQuery>()
        && format!("{e:?}").contains("field_name: \"user_agent\"")
    {
        return Ok(Box::new(ExistsQuery::new("ua".into(), false)));
    }
    let (mut names_a_column, mut positions_on, mut names_user_agent) = (false, None, false);
    query.query_terms(&mut |term, positions| {
        names_a_column |= m.columns.contains(&term.field());
        names_user_agent |= term.field() == m.user_agent;
        if positions {
            positions_on = positions_on.or(m.wordy.iter().find(|(f, _)| *f == term.field()).map(|(_, n)| *n));
        }
    });
    if names_a_column {
        return Err(SearchError::Query(format!(
            "{} take a value or a range (`duration_ms:250`, `duration_ms:>1000`), not this form",
            COLUMN_ONLY.join(", ")
        )));
    }
    if names_user_agent {
        return Err(on_user_agent());
    }
    if let Some(name) = positions_on {
        return Err(SearchError::Query(format!(
            "`{name}` keeps no word positions: search it by words or a phrase, or search `raw` for this form"
        )));
    }
    Ok(query)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    /// Events matching the query and time range (whatever the cursor).
    pub total: u64,
    pub hits: Vec<serde_json::Value>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    pub took_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The client's query is wrong; the message says how.
    #[error("invalid query: {0}")]
    Query(String),
    #[error("search failed: {0}")]
    Internal(tantivy::TantivyError),
    /// The query backend (ClickHouse, in query mode) failed.
    #[error("query backend failed: {0}")]
    Backend(String),
}

impl From<tantivy::TantivyError> for SearchError {
    /// Schema errors at search time come from the query (`field:*` on a field that is not
    /// fast, a range on a text field): the client's mistake, not ours.
    fn from(e: tantivy::TantivyError) -> Self {
        match e {
            tantivy::TantivyError::SchemaError(m) | tantivy::TantivyError::InvalidArgument(m) => SearchError::Query(m),
            other => SearchError::Internal(other),
        }
    }
}

impl Catalog {
    /// Runs a search over the partitions that overlap the time range.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResult, SearchError> {
        let started = Instant::now();
        let limit = req.limit.clamp(1, MAX_LIMIT);
        if req.cursor.is_some() && req.sort == Sort::Slowest {
            return Err(SearchError::Query(
                "`cursor` works with the time orders (newest, oldest), not with slowest".into(),
            ));
        }
        let base = self.parse_query(req)?;
        // The page: the base query narrowed to what comes after the cursor.
        let mut page_req = req.clone();
        let mut seen: Vec<String> = Vec::new();
        if let Some(c) = &req.cursor {
            match req.sort {
                Sort::Newest => page_req.to_ms = Some(req.to_ms.map_or(c.ts + 1, |t| t.min(c.ts + 1))),
                _ => page_req.from_ms = Some(req.from_ms.map_or(c.ts, |f| f.max(c.ts))),
            }
            seen.clone_from(&c.ids);
        }
        let page: Box<dyn Query> = self.parse_query(&page_req)?;
        // The events of earlier pages at the cursor's millisecond are left out of the hits
        // read, so each partition gives that many more.
        let seen: std::collections::HashSet<&str> = seen.iter().map(String::as_str).collect();
        let wanted = limit + seen.len();
        let mut total = 0u64;
        // Each partition's best `limit` (key, partition, document); only the page's documents
        // are read, since reading one decompresses its block of the store.
        let mut searchers = Vec::new();
        let mut top: Vec<(f64, usize, tantivy::DocAddress)> = Vec::new();
        for (_, reader) in self.readers_between(req.from_ms, req.to_ms) {
            let searcher = reader.searcher();
            total += searcher.search(&base, &Count)? as u64;
            let partition = searchers.len();
            match req.sort {
                Sort::Newest | Sort::Oldest => {
                    let order = if req.sort == Sort::Newest { Order::Desc } else { Order::Asc };
                    let c = TopDocs::with_limit(wanted).order_by_fast_field::<i64>("timestamp", order);
                    let docs = searcher.search(&page, &c)?;
                    top.extend(docs.into_iter().map(|(k, a)| (k.unwrap_or(0) as f64, partition, a)));
                }
                Sort::Slowest => {
                    let c = TopDocs::with_limit(limit).order_by_fast_field::<f64>("duration_ms", Order::Desc);
                    let docs = searcher.search(&page, &c)?;
                    top.extend(docs.into_iter().map(|(k, a)| (k.unwrap_or(-1.0), partition, a)));
                }
            }
            searchers.push(searcher);
        }
        match req.sort {
            Sort::Oldest => top.sort_by(|a, b| a.0.total_cmp(&b.0)),
            Sort::Newest | Sort::Slowest => top.sort_by(|a, b| b.0.total_cmp(&a.0)),
        }
        let mut readers: Vec<Option<Hits>> = searchers.iter().map(|_| None).collect();
        let mut hits = Vec::with_capacity(limit.min(top.len()));
        for (_, partition, addr) in top {
            if hits.len() == limit {
                break;
            }
            let reader = readers[partition].get_or_insert_with(|| self.fields.hits(&searchers[partition]));
            let hit = reader.read(addr)?;
            if !hit.get("id").and_then(serde_json::Value::as_str).is_some_and(|id| seen.contains(id)) {
                hits.push(hit);
            }
        }
        let next_cursor = (hits.len() == limit && req.sort != Sort::Slowest)
            .then(|| Cursor::following(req.cursor.as_ref(), &hits).map(|c| c.encode()))
            .flatten();
        Ok(SearchResult { total, hits, next_cursor, took_ms: started.elapsed().as_secs_f64() * 1000.0 })
    }

    /// The events read just before and after the event `id` from the same file, in file order.
    /// `None` when no event has that id.
    pub fn context(&self, id: &str, before: usize, after: usize) -> Result<Option<Context>, SearchError> {
        let Some((fp, offset)) =
            id.rsplit_once(':').and_then(|(f, o)| o.parse::<u64>().ok().map(|o| (f.to_string(), o)))
        else {
            return Ok(None);
        };
        let same_file = || -> Box<dyn Query> {
            Box::new(tantivy::query::TermQuery::new(
                Term::from_field_text(self.fields.fingerprint, &fp),
                tantivy::schema::IndexRecordOption::Basic,
            ))
        };
        let range = |lo: Bound<u64>, hi: Bound<u64>| -> Box<dyn Query> {
            let t = |v| Term::from_field_u64(self.fields.offset, v);
            Box::new(RangeQuery::new(lo.map(t), hi.map(t)))
        };
        let mut event = None;
        let mut earlier: Vec<(u64, serde_json::Value)> = Vec::new();
        let mut later: Vec<(u64, serde_json::Value)> = Vec::new();
        for (_, reader) in self.readers_between(None, None) {
            let searcher = reader.searcher();
            let pick = |q: Box<dyn Query>,
                        n: usize,
                        order: Order,
                        out: &mut Vec<(u64, serde_json::Value)>|
             -> Result<(), SearchError> {
                let c = TopDocs::with_limit(n.max(1)).order_by_fast_field::<u64>("offset", order);
                let mut hits = self.fields.hits(&searcher);
                for (key, addr) in searcher.search(&q, &c)? {
                    out.push((key.unwrap_or(0), hits.read(addr)?));
                }
                Ok(())
            };
            let mut me = Vec::new();
            pick(self.fields.lines(&fp, offset, offset.saturating_add(1)), 1, Order::Asc, &mut me)?;
            if let Some((_, hit)) = me.pop() {
                event = Some(hit);
            }
            if before > 0 {
                let q = BooleanQuery::new(vec![
                    (Occur::Must, same_file()),
                    (Occur::Must, range(Bound::Unbounded, Bound::Excluded(offset))),
                ]);
                pick(Box::new(q), before, Order::Desc, &mut earlier)?;
            }
            if after > 0 {
                let q = BooleanQuery::new(vec![
                    (Occur::Must, same_file()),
                    (Occur::Must, range(Bound::Excluded(offset), Bound::Unbounded)),
                ]);
                pick(Box::new(q), after, Order::Asc, &mut later)?;
            }
        }
        let Some(event) = event else { return Ok(None) };
        earlier.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
        earlier.truncate(before);
        earlier.reverse();
        later.sort_by_key(|(o, _)| *o);
        later.truncate(after);
        Ok(Some(Context {
            before: earlier.into_iter().map(|(_, h)| h).collect(),
            event,
            after: later.into_iter().map(|(_, h)| h).collect(),
        }))
    }

    /// The `n` most frequent values of a keyword field among the matching events.
    pub fn top_values(
        &self,
        field: &str,
        req: &SearchRequest,
        n: usize,
    ) -> Result<Vec<(serde_json::Value, u64)>, SearchError> {
        let query = self.parse_query(req)?;
        let agg: tantivy::aggregation::agg_req::Aggregations = serde_json::from_value(serde_json::json!({
            "top": {"terms": {"field": field, "size": (n * 10).max(100)}}
        }))
        .map_err(|e| SearchError::Query(e.to_string()))?;
        let mut counts: std::collections::HashMap<String, (serde_json::Value, u64)> = std::collections::HashMap::new();
        for (_, reader) in self.readers_between(req.from_ms, req.to_ms) {
            let searcher = reader.searcher();
            let collector = tantivy::aggregation::AggregationCollector::from_aggs(agg.clone(), Default::default());
            let result = searcher.search(&query, &collector)?;
            let json = serde_json::to_value(result).map_err(|e| SearchError::Query(e.to_string()))?;
            for b in json["top"]["buckets"].as_array().into_iter().flatten() {
                let key = b["key"].clone();
                let entry = counts.entry(key.to_string()).or_insert((key, 0));
                entry.1 += b["doc_count"].as_u64().unwrap_or(0);
            }
        }
        let mut top: Vec<(serde_json::Value, u64)> = counts.into_values().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
        top.truncate(n);
        Ok(top)
    }

    /// Runs `collector` over the matching events of every partition in the range, leaving out
    /// the lines in `skip` (those the index is about to replay), and hands `f` each partition's
    /// fruit as it is collected, so only one is held at a time.
    pub fn collect<C: Collector>(
        &self,
        req: &SearchRequest,
        skip: &[Replay],
        collector: &C,
        mut f: impl FnMut(C::Fruit),
    ) -> Result<(), SearchError> {
        let mut query = self.parse_query(req)?;
        if !skip.is_empty() {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, query)];
            for r in skip {
                clauses.push((Occur::MustNot, self.fields.lines(&r.fingerprint, r.from, r.until)));
            }
            query = Box::new(BooleanQuery::new(clauses));
        }
        for (_, reader) in self.readers_between(req.from_ms, req.to_ms) {
            f(reader.searcher().search(&query, collector)?);
        }
        Ok(())
    }

    /// Checks that the request's query parses, without running it.
    pub fn check_query(&self, req: &SearchRequest) -> Result<(), SearchError> {
        self.parse_query(req).map(drop)
    }

    /// Calls `f` with every matching event, oldest partition first and in index order within
    /// one, until `f` returns false. For exports and verification, where a top-N would not do.
    pub fn export(
        &self,
        req: &SearchRequest,
        mut f: impl FnMut(serde_json::Value) -> bool,
    ) -> Result<u64, SearchError> {
        let query = self.parse_query(req)?;
        let mut n = 0;
        for (_, reader) in self.readers_between(req.from_ms, req.to_ms) {
            let searcher = reader.searcher();
            let mut hits = self.fields.hits(&searcher);
            for addr in searcher.search(&query, &DocSetCollector)? {
                n += 1;
                if !f(hits.read(addr)?) {
                    return Ok(n);
                }
            }
        }
        Ok(n)
    }

    fn parse_query(&self, req: &SearchRequest) -> Result<Box<dyn Query>, SearchError> {
        let rewritten = rewrite_cidr(req.query.trim())?;
        let text = rewritten.as_str();
        let user: Box<dyn Query> = if text.is_empty() || text == "*" {
            Box::new(AllQuery)
        } else {
            let mut parser =
                QueryParser::new(self.query_schema.clone(), self.fields.default_search(), TokenizerManager::default());
            parser.set_conjunction_by_default();
            let parsed = match parser.parse_query(text) {
                // Only exclusions (`NOT b`, `-b`): everything but them, as inside a query.
                Err(QueryParserError::AllButQueryForbidden) => parser.parse_query(&format!("* AND ({text})")),
                other => other,
            };
            let query = parsed.map_err(|e| {
                SearchError::Query(match e {
                    // tantivy words this one as "Only excluding terms given".
                    QueryParserError::ExpectedFloat(e) => format!("expected a number: {e}"),
                    e => e.to_string(),
                })
            })?;
            let query = rewrite(query, &Mend::new(&self.schema))?;
            let mut by_id = false;
            query.query_terms(&mut |term, _| by_id |= term.field() == self.fields.id);
            if by_id {
                return Err(SearchError::Query(
                    "field `id` is not searchable; GET /api/v1/events/{id}/context returns the event with that id"
                        .into(),
                ));
            }
            query
        };
        if req.from_ms.is_none() && req.to_ms.is_none() {
            return Ok(user);
        }
        let ts = self.fields.timestamp;
        let lower = req.from_ms.map_or(Bound::Unbounded, |f| Bound::Included(Term::from_field_i64(ts, f)));
        let upper = req.to_ms.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_i64(ts, t)));
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, user),
            (Occur::Must, Box::new(RangeQuery::new(lower, upper))),
        ])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_become_ranges() {
        assert_eq!(
            rewrite_cidr("client_ip:203.0.113.0/24 AND status:500").unwrap(),
            "ip:[203.0.113.0 TO 203.0.113.255] AND status:500"
        );
        assert_eq!(rewrite_cidr("client_ip:\"10.1.2.3\"").unwrap(), "client_ip:\"10.1.2.3\"");
        assert_eq!(rewrite_cidr("(client_ip:10.0.0.0/8)").unwrap(), "(ip:[10.0.0.0 TO 10.255.255.255])");
        assert!(rewrite_cidr("client_ip:10.0.0.0/33").is_err());
        assert!(rewrite_cidr("client_ip:nope/8").is_err());
    }
}
