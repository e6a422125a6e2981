//! The tantivy schema of an event.
//!
//! The whole redacted event is stored once, as JSON in `_source`; the searchable fields are
//! indexed (and fast where they sort or range) but not stored again. Storing every field twice
//! would double the index for nothing: hits are rebuilt from `_source`.
//!
//! Nothing here keeps field norms. They are one byte per document per field, and they only
//! serve relevance scoring, which no query here uses: hits are ordered by time or duration.
//! Only `raw` and `message` (what a bare word or a phrase searches) keep word positions.

use std::ops::Bound;

use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, IpAddrOptions, NumericOptions, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DocAddress, Searcher, SegmentReader, TantivyDocument, Term};

use crate::event::{Event, LineFlag};
use crate::redact::Redacted;

/// Fields that hold one exact value (searched as `field:value`). They are also fast fields, so
/// `/api/v1/fields/{field}/top` can count their values without reading documents; `ua` is the
/// whole user-agent as one value (`user_agent` is searched word by word).
pub const KEYWORD_FIELDS: &[&str] = &[
    "method",
    "route",
    "path",
    "host",
    "client_ip",
    "source",
    "format",
    "level",
    "request_id",
    "user_id",
    "client_id",
    "protocol",
    "severity",
    "ua",
];
/// Fields searched word by word.
pub const TEXT_FIELDS: &[&str] = &["message", "raw", "user_agent", "referer", "query", "body", "parse_error"];

#[derive(Clone)]
pub struct Fields {
    /// No longer written: an event is found by its file's fingerprint and its offset (see
    /// [`Fields::lines`]). A term per event was about 8 % of the index, and leaving it out cut
    /// the ingest's CPU time by 6 %. The field stays so that partitions written before keep
    /// their field order.
    pub id: Field,
    pub timestamp: Field,
    pub status: Field,
    pub duration_ms: Field,
    pub bytes_sent: Field,
    pub unparsed: Field,
    pub flags: Field,
    pub anomalies: Field,
    pub families: Field,
    pub anomaly_score: Field,
    pub attack: Field,
    pub source_json: Field,
    /// The file an event came from and where, for the context view.
    pub fingerprint: Field,
    pub offset: Field,
    /// The client address as an address, for ranges and CIDR blocks.
    pub ip: Field,
    keywords: Vec<Field>,
    texts: Vec<Field>,
}

/// Text indexed with `tokenizer`, keeping `record`, without field norms.
fn text(tokenizer: &str, record: IndexRecordOption) -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(record).set_fieldnorms(false),
    )
}

/// One exact value, searched whole.
fn keyword() -> TextOptions {
    text("raw", IndexRecordOption::Basic)
}

/// A number searched by value or range (`INDEXED` would add field norms).
fn number() -> NumericOptions {
    NumericOptions::default().set_indexed()
}

/// A number kept only as a column. A range query reads the column anyway when there is one, and
/// an exact value is asked as a range from it to itself (see [`COLUMN_ONLY`]), so indexing
/// every distinct timestamp, duration and size would add terms no query reads: 6.8 of the
/// 106 MiB a million generated events took.
fn column_only(for_queries: bool) -> NumericOptions {
    if for_queries { number() | FAST } else { NumericOptions::default() | FAST }
}

/// Numbers kept only as columns; the query parser sees them as indexed, and a search turns its
/// terms on them into ranges.
pub const COLUMN_ONLY: &[&str] = &["timestamp", "duration_ms", "bytes_sent"];

/// Fields that keep word positions, for phrases; the other text fields keep none, since `raw`
/// holds their words too.
const PHRASE_FIELDS: &[&str] = &["message", "raw"];

/// Text fields without word positions whose text is part of the line, so that a phrase on them
/// is also a phrase on `raw`: the search asks for both (see `search::rewrite`).
pub const PHRASES_IN_RAW: &[&str] = &["referer", "query", "body"];

pub fn build() -> (Schema, Fields) {
    layout(false)
}

/// The schema the query parser reads: [`build`]'s, with the [`COLUMN_ONLY`] numbers indexed, so
/// that `duration_ms:250` parses to a term before the search makes it a range.
pub fn for_queries() -> Schema {
    layout(true).0
}

fn layout(for_queries: bool) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let id = b.add_text_field("id", keyword());
    let timestamp = b.add_i64_field("timestamp", column_only(for_queries));
    let status = b.add_u64_field("status", number() | FAST);
    let duration_ms = b.add_f64_field("duration_ms", column_only(for_queries));
    let bytes_sent = b.add_u64_field("bytes_sent", column_only(for_queries));
    let unparsed = b.add_bool_field("unparsed", number());
    let flags = b.add_text_field("flags", keyword());
    let anomalies = b.add_text_field("anomalies", keyword() | FAST);
    let families = b.add_text_field("family", keyword() | FAST);
    // Fast too, so that a hit's id is rebuilt from the fingerprint and the offset columns
    // instead of being stored with every event (a column holds each file's fingerprint once).
    let fingerprint = b.add_text_field("fingerprint", keyword() | FAST);
    // Offsets are only ever asked for as ranges within one file, which the fast field answers;
    // indexing them too would add a term per event.
    let offset = b.add_u64_field("offset", FAST);
    let ip = b.add_ip_addr_field("ip", IpAddrOptions::default().set_indexed().set_fast());
    let anomaly_score = b.add_u64_field("anomaly_score", number() | FAST);
    let attack = b.add_bool_field("attack", number());
    let keywords = KEYWORD_FIELDS.iter().map(|n| b.add_text_field(n, keyword() | FAST)).collect();
    let texts = TEXT_FIELDS
        .iter()
        .map(|n| {
            // The query parser makes a phrase of a quoted or many-word value only on a field
            // with positions; the search then answers it on the others (see `PHRASES_IN_RAW`).
            let record = if PHRASE_FIELDS.contains(n) || for_queries {
                IndexRecordOption::WithFreqsAndPositions
            } else {
                IndexRecordOption::Basic
            };
            b.add_text_field(n, text("default", record))
        })
        .collect();
    let source_json = b.add_text_field("_source", STORED);
    let schema = b.build();
    (
        schema,
        Fields {
            id,
            timestamp,
            status,
            duration_ms,
            bytes_sent,
            unparsed,
            flags,
            anomalies,
            families,
            anomaly_score,
            attack,
            source_json,
            fingerprint,
            offset,
            ip,
            keywords,
            texts,
        },
    )
}

impl Fields {
    /// The tantivy document of a redacted event. Taking `Redacted` is what keeps secrets out.
    /// `ids_in_columns` says whether the partition has the fingerprint column from which a hit's
    /// id is rebuilt (partitions made before it keep the id in `_source`).
    pub fn document(&self, r: &Redacted, ids_in_columns: bool) -> TantivyDocument {
        let ev = r.event();
        // The line goes in twice (its words, and the stored JSON) with the fields' values: room
        // for all of it at once, instead of growing the buffer from 1 KiB and copying.
        let mut doc = TantivyDocument::with_capacity(3 * ev.raw.len() + 512);
        let mut id_in_columns = false;
        if let Some((fp, digits)) = ev.id.rsplit_once(':')
            && let Ok(offset) = digits.parse::<u64>()
        {
            doc.add_text(self.fingerprint, fp);
            doc.add_u64(self.offset, offset);
            // Only when the columns give the id back as it is ("+7" or "07" would come back "7").
            let canonical = digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
            id_in_columns = ids_in_columns && canonical;
        }
        doc.add_i64(self.timestamp, ev.timestamp_ms);
        if let Some(s) = ev.status {
            doc.add_u64(self.status, u64::from(s));
        }
        if let Some(d) = ev.duration_ms {
            doc.add_f64(self.duration_ms, d);
        }
        if let Some(b) = ev.bytes_sent {
            doc.add_u64(self.bytes_sent, b);
        }
        doc.add_bool(self.unparsed, ev.parse_error.is_some());
        for f in &ev.flags {
            doc.add_text(self.flags, flag_name(*f));
        }
        for a in &ev.anomalies {
            doc.add_text(self.anomalies, a);
        }
        for f in &ev.families {
            doc.add_text(self.families, f);
        }
        doc.add_u64(self.anomaly_score, u64::from(ev.anomaly_score));
        if let Some(addr) = ev.client_ip.as_deref().and_then(|c| c.parse::<std::net::IpAddr>().ok()) {
            let v6 = match addr {
                std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                std::net::IpAddr::V6(v6) => v6,
            };
            doc.add_ip_addr(self.ip, v6);
        }
        doc.add_bool(self.attack, ev.attack);
        let keywords = keyword_values(ev);
        // The line without its timestamp, as two values when the parser said where it is: a
        // time is searched as a range, and its words are a sixth of the line's.
        let (raw, after_time) = match ev.time_in_raw {
            Some((a, b)) => match (ev.raw.get(..a as usize), ev.raw.get(b as usize..)) {
                (Some(before), Some(after)) => (before, Some(after)),
                _ => (ev.raw.as_str(), None),
            },
            None => (ev.raw.as_str(), None),
        };
        let texts = [
            ("message", ev.message.as_deref()),
            ("raw", Some(raw)),
            // Its words are in `raw`, and the whole of it in the `ua` column: a search reads
            // them there (see `agent`).
            ("user_agent", None),
            ("referer", ev.referer.as_deref()),
            ("query", ev.query.as_deref()),
            ("body", ev.body.as_deref()),
            ("parse_error", ev.parse_error.as_deref()),
        ];
        for (fields, values) in [(&self.keywords, &keywords[..]), (&self.texts, &texts[..])] {
            for (field, (_, value)) in fields.iter().zip(values) {
                if let Some(v) = value {
                    doc.add_text(*field, v);
                }
            }
        }
        if let Some(after) = after_time {
            doc.add_text(self.texts[1], after);
        }
        let stored = Stored::of(ev, &keywords, !id_in_columns);
        // Sized for the line it mostly holds, so that it is not grown several times either.
        let mut json = Vec::with_capacity(ev.raw.len() + 256);
        let json = match serde_json::to_writer(&mut json, &stored) {
            Ok(()) => String::from_utf8(json).unwrap_or_default(),
            Err(_) => String::new(),
        };
        doc.add_text(self.source_json, json);
        doc
    }

    /// The events of the file `fingerprint` read from offsets `[from, until)`: how an event or a
    /// run of lines is found, since ids are not indexed.
    pub fn lines(&self, fingerprint: &str, from: u64, until: u64) -> Box<dyn Query> {
        let offset = |v| Term::from_field_u64(self.offset, v);
        Box::new(BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fingerprint, fingerprint),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(RangeQuery::new(Bound::Included(offset(from)), Bound::Excluded(offset(until))))),
        ]))
    }

    /// Reads hits of one searcher, event by event as [`Fields::document`] wrote them.
    pub fn hits<'s>(&'s self, searcher: &'s Searcher) -> Hits<'s> {
        Hits { fields: self, searcher, columns: Vec::new() }
    }

    /// Fields a bare word searches.
    pub fn default_search(&self) -> Vec<Field> {
        vec![self.texts[0], self.texts[1]]
    }
}

/// What `_source` holds of an event: everything no column gives back (the keywords and the
/// numbers in [`Hits::read`]). A request's path, route, user agent and the like are then
/// kept once, in columns that hold each distinct value once, instead of once per event here.
#[derive(serde::Serialize)]
struct Stored<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    headers: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    raw: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parse_error: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    flags: &'a [LineFlag],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    anomalies: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    families: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    attack: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    matches: &'a [crate::event::AnomalyMatch],
    /// Keyword values too long for their column to give back whole.
    #[serde(flatten)]
    too_long: std::collections::BTreeMap<&'static str, &'a str>,
}

impl<'a> Stored<'a> {
    /// `keywords` are `ev`'s [`keyword_values`]; `id` says whether the id is kept here.
    fn of(ev: &'a Event, keywords: &[(&'static str, Option<&'a str>)], id: bool) -> Self {
        Stored {
            id: id.then_some(ev.id.as_str()),
            query: ev.query.as_deref(),
            upstream_ms: ev.upstream_ms,
            request_bytes: ev.request_bytes,
            referer: ev.referer.as_deref(),
            message: ev.message.as_deref(),
            headers: &ev.headers,
            body: ev.body.as_deref(),
            raw: &ev.raw,
            parse_error: ev.parse_error.as_deref(),
            flags: &ev.flags,
            anomalies: &ev.anomalies,
            families: &ev.families,
            attack: ev.attack,
            matches: &ev.matches,
            too_long: keywords
                .iter()
                .filter_map(|(column, v)| v.filter(|v| v.len() > COLUMN_TEXT_MAX).map(|v| (event_key(column), v)))
                .collect(),
        }
    }
}

/// The longest text a fast column gives back whole; it cuts longer ones.
const COLUMN_TEXT_MAX: usize = 65_535;

/// The value of each of `KEYWORD_FIELDS`, in that order. Each is a single-valued fast
/// field, which gives the event's field back whole (see [`event_key`]).
fn keyword_values(ev: &Event) -> [(&'static str, Option<&str>); 14] {
    [
        ("method", ev.method.as_deref()),
        ("route", ev.route.as_deref()),
        ("path", ev.path.as_deref()),
        ("host", ev.host.as_deref()),
        ("client_ip", ev.client_ip.as_deref()),
        ("source", Some(&*ev.source)),
        ("format", Some(&*ev.format)),
        ("level", ev.level.as_deref()),
        ("request_id", ev.request_id.as_deref()),
        ("user_id", ev.user_id.as_deref()),
        ("client_id", ev.client_id.as_deref()),
        ("protocol", ev.protocol.as_deref()),
        ("severity", ev.severity.as_deref()),
        ("ua", ev.user_agent.as_deref()),
    ]
}

/// The event field a keyword column holds.
fn event_key(column: &'static str) -> &'static str {
    if column == "ua" { "user_agent" } else { column }
}

/// A keyword column of one segment, and the values read from it so far: hits share their
/// method, host or user agent, and reading a value decompresses a block of its dictionary.
/// An export reads every event of a segment, so at most [`KEYWORDS_KEPT`] values are kept.
struct Keyword {
    key: &'static str,
    column: Option<StrColumn>,
    seen: rustc_hash::FxHashMap<u64, serde_json::Value>,
}

/// Values kept per keyword column and segment while hits are read.
const KEYWORDS_KEPT: usize = 4096;

/// The columns of one segment that give hits their fields back.
struct Columns {
    text: Vec<Keyword>,
    timestamp: Option<Column<i64>>,
    status: Option<Column<u64>>,
    duration_ms: Option<Column<f64>>,
    bytes_sent: Option<Column<u64>>,
    anomaly_score: Option<Column<u64>>,
    /// A hit's id is `{fingerprint}:{offset}`.
    fingerprint: Option<StrColumn>,
    offset: Option<Column<u64>>,
}

impl Columns {
    fn open(segment: &SegmentReader) -> tantivy::Result<Self> {
        let fast = segment.fast_fields();
        let mut text = Vec::with_capacity(KEYWORD_FIELDS.len());
        for column in KEYWORD_FIELDS {
            text.push(Keyword { key: event_key(column), column: fast.str(column)?, seen: Default::default() });
        }
        Ok(Columns {
            text,
            timestamp: fast.column_opt("timestamp")?,
            status: fast.column_opt("status")?,
            duration_ms: fast.column_opt("duration_ms")?,
            bytes_sent: fast.column_opt("bytes_sent")?,
            anomaly_score: fast.column_opt("anomaly_score")?,
            // Partitions made before the fingerprint column keep ids in `_source`.
            fingerprint: match segment.schema().get_field("fingerprint") {
                Ok(f) if segment.schema().get_field_entry(f).is_fast() => fast.str("fingerprint")?,
                _ => None,
            },
            offset: fast.column_opt("offset")?,
        })
    }
}

/// Rebuilds hits: `_source` plus the fields its columns give back. Columns are opened once per
/// segment and kept for the next hit. A partition written before `_source` left fields out
/// has them in `_source`, and `_source` wins.
pub struct Hits<'s> {
    fields: &'s Fields,
    searcher: &'s Searcher,
    columns: Vec<Option<Columns>>,
}

impl Hits<'_> {
    pub fn read(&mut self, addr: DocAddress) -> tantivy::Result<serde_json::Value> {
        use serde_json::Value;
        let doc: TantivyDocument = self.searcher.doc(addr)?;
        let source =
            doc.get_first(self.fields.source_json).and_then(|v| tantivy::schema::Value::as_str(&v)).unwrap_or("{}");
        let Ok(Value::Object(mut hit)) = serde_json::from_str::<Value>(source) else {
            return Ok(Value::Null);
        };
        let segment = addr.segment_ord as usize;
        if self.columns.len() <= segment {
            self.columns.resize_with(segment + 1, || None);
        }
        let columns = match &mut self.columns[segment] {
            Some(c) => c,
            slot => slot.insert(Columns::open(self.searcher.segment_reader(addr.segment_ord))?),
        };
        let doc = addr.doc_id;
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                hit.entry(key).or_insert(v);
            }
        };
        for keyword in &mut columns.text {
            let Some(column) = &keyword.column else { continue };
            let Some(ord) = column.term_ords(doc).next() else { continue };
            let value = match keyword.seen.get(&ord) {
                Some(v) => v.clone(),
                None => {
                    let mut text = String::new();
                    if !column.ord_to_str(ord, &mut text)? {
                        continue;
                    }
                    let v = Value::String(text);
                    if keyword.seen.len() < KEYWORDS_KEPT {
                        keyword.seen.insert(ord, v.clone());
                    }
                    v
                }
            };
            put(keyword.key, Some(value));
        }
        put("timestamp_ms", columns.timestamp.as_ref().and_then(|c| c.first(doc)).map(Value::from));
        put("status", columns.status.as_ref().and_then(|c| c.first(doc)).map(Value::from));
        put("duration_ms", columns.duration_ms.as_ref().and_then(|c| c.first(doc)).map(Value::from));
        put("bytes_sent", columns.bytes_sent.as_ref().and_then(|c| c.first(doc)).map(Value::from));
        // Zero is left out of an event's JSON, as `Event` serialises it.
        put(
            "anomaly_score",
            columns.anomaly_score.as_ref().and_then(|c| c.first(doc)).filter(|s| *s > 0).map(Value::from),
        );
        if !hit.contains_key("id")
            && let (Some(fingerprint), Some(offset)) = (&columns.fingerprint, &columns.offset)
            && let (Some(ord), Some(offset)) = (fingerprint.term_ords(doc).next(), offset.first(doc))
        {
            let mut id = String::new();
            if fingerprint.ord_to_str(ord, &mut id)? {
                id.push(':');
                id.push_str(&offset.to_string());
                hit.insert("id".into(), Value::String(id));
            }
        }
        Ok(Value::Object(hit))
    }
}

pub fn flag_name(f: LineFlag) -> &'static str {
    match f {
        LineFlag::Truncated => "truncated",
        LineFlag::InvalidUtf8 => "invalid_utf8",
        LineFlag::Nul => "nul",
        LineFlag::Partial => "partial",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::redact::{Redactor, Replacement};
    use tantivy::schema::Value;

    #[test]
    fn document_fields_line_up_with_their_names() {
        let (schema, fields) = build();
        let ev = Event {
            method: Some("GET".into()),
            format: "json".into(),
            raw: "r".into(),
            message: Some("m".into()),
            user_agent: Some("curl/8".into()),
            severity: Some("HIGH".into()),
            ..Event::default()
        };
        let doc = fields.document(&Redactor::new(&[], Replacement::Fixed).redact(ev), true);
        let get =
            |name: &str| doc.get_first(schema.get_field(name).unwrap()).and_then(|v| v.as_str().map(str::to_string));
        assert_eq!(get("method").as_deref(), Some("GET"));
        assert_eq!(get("format").as_deref(), Some("json"));
        assert_eq!(get("message").as_deref(), Some("m"));
        assert_eq!(get("raw").as_deref(), Some("r"));
        assert_eq!(get("ua").as_deref(), Some("curl/8"));
        assert_eq!(get("severity").as_deref(), Some("HIGH"));
        assert_eq!(KEYWORD_FIELDS.len(), 14);
        assert_eq!(TEXT_FIELDS.len(), 7);
    }

    /// An event with every field set, some to values a column might not hold as given.
    fn everything(n: u64) -> Event {
        Event {
            id: format!("fp:{n}"),
            timestamp_ms: 1_764_000_000_123 + n as i64,
            host: Some("shop.example".into()),
            source: "/var/log/a.log".into(),
            format: "json".into(),
            method: Some("PÖST".into()),
            // A column keeps 65,535 bytes of a value: one at the limit and one over it.
            path: Some(format!("/{}", "a".repeat(65_534 + n as usize))),
            route: Some("/a/:id".into()),
            query: Some("q=1".into()),
            protocol: Some(String::new()),
            status: Some(503),
            duration_ms: Some(0.1 + 0.2),
            upstream_ms: Some(1.5),
            bytes_sent: Some(u64::MAX),
            request_bytes: Some(0),
            client_ip: Some("2001:db8::1".into()),
            user_agent: Some("Mozilla/5.0 (X11) \u{1F600}".into()),
            referer: Some("https://r.example/".into()),
            request_id: Some("req-1".into()),
            client_id: Some("c".into()),
            user_id: Some("u".into()),
            level: Some("error".into()),
            message: Some("m".into()),
            headers: [("x-a".to_string(), "b".to_string())].into_iter().collect(),
            body: Some("{}".into()),
            raw: "raw line".into(),
            // Past the end of the line: the whole line is indexed.
            time_in_raw: Some((4, 99)),
            parse_error: Some("bad".into()),
            flags: vec![LineFlag::Truncated, LineFlag::Nul],
            anomalies: vec!["sqli-2".into(), "sqli-1".into()],
            families: vec!["sqli".into()],
            anomaly_score: 9,
            severity: Some("HIGH".into()),
            attack: true,
            matches: vec![crate::event::AnomalyMatch {
                rule: "sqli-2".into(),
                target: "query".into(),
                excerpt: "q=1".into(),
            }],
        }
    }

    #[test]
    fn hits_read_back_exactly_the_event_that_was_written() {
        let (schema, fields) = build();
        let index = tantivy::Index::create_in_ram(schema);
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).expect("writer");
        let redactor = Redactor::new(&[], Replacement::Fixed);
        let bare = Event { id: "fp:9".into(), timestamp_ms: -5, source: "stdin".into(), ..Event::default() };
        let events = vec![everything(0), everything(1), bare];
        for ev in &events {
            writer.add_document(fields.document(&redactor.redact(ev.clone()), true)).expect("add");
        }
        writer.commit().expect("commit");
        let searcher = index.reader().expect("reader").searcher();
        let mut hits = fields.hits(&searcher);
        let mut read: Vec<serde_json::Value> = searcher
            .search(&tantivy::query::AllQuery, &tantivy::collector::DocSetCollector)
            .expect("search")
            .into_iter()
            .map(|addr| hits.read(addr).expect("read"))
            .collect();
        read.sort_by_key(|h| h["id"].as_str().map(str::to_string));
        let written: Vec<serde_json::Value> = events.iter().map(|e| serde_json::to_value(e).expect("json")).collect();
        assert_eq!(read.len(), written.len());
        for (r, w) in read.iter().zip(&written) {
            let (r, w) = (r.as_object().expect("object"), w.as_object().expect("object"));
            for key in r.keys().chain(w.keys()) {
                let short = |v: Option<&serde_json::Value>| {
                    v.map(|v| (v.to_string().len(), v.to_string().chars().take(80).collect::<String>()))
                };
                assert!(
                    r.get(key) == w.get(key),
                    "{key}: read {:?}, written {:?}",
                    short(r.get(key)),
                    short(w.get(key))
                );
            }
        }
        let back: Event = serde_json::from_value(read[0].clone()).expect("a hit is an event");
        // Where the timestamp was in the line only served the index.
        assert_eq!(back, Event { time_in_raw: None, ..events[0].clone() });
    }

    #[test]
    fn reading_every_hit_of_a_segment_keeps_a_bounded_number_of_values() {
        let (schema, fields) = build();
        let index = tantivy::Index::create_in_ram(schema);
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 50_000_000).expect("writer");
        let redactor = Redactor::new(&[], Replacement::Fixed);
        let n = KEYWORDS_KEPT + 500;
        for i in 0..n {
            let ev = Event {
                id: format!("f:{i}"),
                path: Some(format!("/p/{i}")),
                method: Some("GET".into()),
                ..Event::default()
            };
            writer.add_document(fields.document(&redactor.redact(ev), true)).expect("add");
        }
        writer.commit().expect("commit");
        let searcher = index.reader().expect("reader").searcher();
        assert_eq!(searcher.segment_readers().len(), 1);
        let mut hits = fields.hits(&searcher);
        for addr in searcher.search(&tantivy::query::AllQuery, &tantivy::collector::DocSetCollector).expect("search") {
            let hit = hits.read(addr).expect("read");
            let id = hit["id"].as_str().expect("id").trim_start_matches("f:");
            assert_eq!(hit["path"], format!("/p/{id}"), "values read once the cache is full are right");
            assert_eq!(hit["method"], "GET");
        }
        let columns = hits.columns[0].as_ref().expect("segment read");
        let kept = |key| columns.text.iter().find(|k| k.key == key).map(|k| k.seen.len());
        assert_eq!(kept("path"), Some(KEYWORDS_KEPT));
        assert_eq!(kept("method"), Some(1));
    }

    #[test]
    fn the_stored_json_leaves_out_what_columns_hold() {
        let (_, fields) = build();
        let stored = |ev: Event, ids_in_columns: bool| {
            let doc = fields.document(&Redactor::new(&[], Replacement::Fixed).redact(ev), ids_in_columns);
            doc.get_first(fields.source_json).and_then(|v| v.as_str().map(str::to_string)).expect("stored")
        };
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&stored(everything(1), true)).expect("json");
        for column in KEYWORD_FIELDS {
            let key = event_key(column);
            assert_eq!(json.contains_key(key), key == "path", "{key}: only the path is too long for its column");
        }
        for key in ["timestamp_ms", "status", "duration_ms", "bytes_sent", "anomaly_score", "raw", "id"] {
            assert_eq!(json.contains_key(key), key == "raw", "{key}");
        }
        // Where the partition has no fingerprint column, the id stays.
        let kept = stored(everything(1), false);
        assert!(kept.contains(r#""id":"fp:1""#), "{kept}");
        // And where the columns would not give it back as it is.
        let mut odd = everything(1);
        odd.id = "fp:01".into();
        let kept = stored(odd, true);
        assert!(kept.contains(r#""id":"fp:01""#), "{kept}");
    }
}
