//! Searching across day partitions: tantivy's query language over the event fields, a time
//! range, newest first.

use std::ops::Bound;
use std::time::Instant;

use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery};
use tantivy::schema::Value;
use tantivy::tokenizer::TokenizerManager;
use tantivy::{Order, TantivyDocument, Term};

use super::Catalog;

/// The most hits one request may return.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchResult {
    pub total: u64,
    pub hits: Vec<serde_json::Value>,
    pub took_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The client's query is wrong; the message says how.
    #[error("invalid query: {0}")]
    Query(String),
    #[error("search failed: {0}")]
    Internal(tantivy::TantivyError),
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
        let query = self.parse_query(req)?;
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let mut total = 0u64;
        let mut top: Vec<(i64, serde_json::Value)> = Vec::new();
        for (_, reader) in self.readers_between(req.from_ms, req.to_ms) {
            let searcher = reader.searcher();
            let collector = (Count, TopDocs::with_limit(limit).order_by_fast_field::<i64>("timestamp", Order::Desc));
            let (count, docs) = searcher.search(&query, &collector)?;
            total += count as u64;
            for (ts, addr) in docs {
                let doc: TantivyDocument = searcher.doc(addr)?;
                let source = doc.get_first(self.fields.source_json).and_then(|v| v.as_str()).unwrap_or("{}");
                let hit = serde_json::from_str(source).unwrap_or(serde_json::Value::Null);
                top.push((ts.unwrap_or(0), hit));
            }
        }
        top.sort_by_key(|hit| std::cmp::Reverse(hit.0));
        top.truncate(limit);
        Ok(SearchResult {
            total,
            hits: top.into_iter().map(|(_, h)| h).collect(),
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Calls `f` with every matching event, partition by partition, in no particular order.
    /// For exports and verification, where a top-N would not do.
    pub fn export(&self, req: &SearchRequest, mut f: impl FnMut(serde_json::Value)) -> Result<u64, SearchError> {
        let query = self.parse_query(req)?;
        let mut n = 0;
        for (_, reader) in self.readers_between(req.from_ms, req.to_ms) {
            let searcher = reader.searcher();
            for addr in searcher.search(&query, &DocSetCollector)? {
                let doc: TantivyDocument = searcher.doc(addr)?;
                let source = doc.get_first(self.fields.source_json).and_then(|v| v.as_str()).unwrap_or("{}");
                f(serde_json::from_str(source).unwrap_or(serde_json::Value::Null));
                n += 1;
            }
        }
        Ok(n)
    }

    fn parse_query(&self, req: &SearchRequest) -> Result<Box<dyn Query>, SearchError> {
        let text = req.query.trim();
        let user: Box<dyn Query> = if text.is_empty() || text == "*" {
            Box::new(AllQuery)
        } else {
            let mut parser =
                QueryParser::new(self.schema.clone(), self.fields.default_search(), TokenizerManager::default());
            parser.set_conjunction_by_default();
            parser.parse_query(text).map_err(|e| SearchError::Query(e.to_string()))?
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
