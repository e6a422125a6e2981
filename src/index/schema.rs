//! The tantivy schema of an event.
//!
//! The whole redacted event is stored once, as JSON in `_source`; the searchable fields are
//! indexed (and fast where they sort or range) but not stored again. Storing every field twice
//! would double the index for nothing: hits are rebuilt from `_source`.
//!
//! Nothing here keeps field norms. They are one byte per document per field, and they only
//! serve relevance scoring, which no query here uses: hits are ordered by time or duration.
//! Only `raw` and `message` (what a bare word or a phrase searches) keep word positions.

use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, IpAddrOptions, NumericOptions, STORED, Schema, TextFieldIndexing, TextOptions,
};

use crate::event::LineFlag;
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

/// Fields whose phrases are searched; the other text fields keep no word positions, since
/// `raw` holds their words too.
const PHRASE_FIELDS: &[&str] = &["message", "raw"];

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let id = b.add_text_field("id", keyword());
    let timestamp = b.add_i64_field("timestamp", number() | FAST);
    let status = b.add_u64_field("status", number() | FAST);
    let duration_ms = b.add_f64_field("duration_ms", number() | FAST);
    let bytes_sent = b.add_u64_field("bytes_sent", number() | FAST);
    let unparsed = b.add_bool_field("unparsed", number());
    let flags = b.add_text_field("flags", keyword());
    let anomalies = b.add_text_field("anomalies", keyword() | FAST);
    let families = b.add_text_field("family", keyword() | FAST);
    let fingerprint = b.add_text_field("fingerprint", keyword());
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
            let record = if PHRASE_FIELDS.contains(n) {
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
    pub fn document(&self, r: &Redacted) -> TantivyDocument {
        let ev = r.event();
        let mut doc = TantivyDocument::default();
        doc.add_text(self.id, &ev.id);
        if let Some((fp, offset)) = ev.id.rsplit_once(':')
            && let Ok(offset) = offset.parse::<u64>()
        {
            doc.add_text(self.fingerprint, fp);
            doc.add_u64(self.offset, offset);
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
        let keywords = [
            ("method", ev.method.as_deref()),
            ("route", ev.route.as_deref()),
            ("path", ev.path.as_deref()),
            ("host", ev.host.as_deref()),
            ("client_ip", ev.client_ip.as_deref()),
            ("source", Some(ev.source.as_str())),
            ("format", Some(ev.format.as_str())),
            ("level", ev.level.as_deref()),
            ("request_id", ev.request_id.as_deref()),
            ("user_id", ev.user_id.as_deref()),
            ("client_id", ev.client_id.as_deref()),
            ("protocol", ev.protocol.as_deref()),
            ("severity", ev.severity.as_deref()),
            ("ua", ev.user_agent.as_deref()),
        ];
        let texts = [
            ("message", ev.message.as_deref()),
            ("raw", Some(ev.raw.as_str())),
            ("user_agent", ev.user_agent.as_deref()),
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
        doc.add_text(self.source_json, serde_json::to_string(ev).unwrap_or_default());
        doc
    }

    /// Fields a bare word searches.
    pub fn default_search(&self) -> Vec<Field> {
        vec![self.texts[0], self.texts[1]]
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
        let doc = fields.document(&Redactor::new(&[], Replacement::Fixed).redact(ev));
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
}
