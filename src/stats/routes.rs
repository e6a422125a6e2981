//! Routes: the path of a request with its variable parts named, so that statistics group
//! `/api/users/42` with `/api/users/43`.
//!
//! Configured templates win; otherwise the parsers' heuristics (`event::route_of`) stand. The
//! number of distinct routes is capped: a route first seen after the cap is folded into
//! `other` and counted, so a scanner walking ten thousand random paths cannot grow the
//! statistics without bound.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::Event;

/// The route of requests folded by the cap.
pub const OTHER: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `:name`: any one segment.
    Param,
    /// `*` at the end: the rest of the path, however many segments.
    Rest,
}

/// One configured route template, such as `/api/users/:id/orders` or `/static/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("route template {text:?} must start with '/'"));
        };
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            segments.push(match *p {
                "*" if i + 1 == parts.len() => Segment::Rest,
                "*" => return Err(format!("route template {text:?}: '*' may only be the last segment")),
                p if p.starts_with(':') && p.len() > 1 => Segment::Param,
                p => Segment::Literal(p.to_string()),
            });
        }
        Ok(Template { text: text.to_string(), segments })
    }

    fn matches(&self, path: &str) -> bool {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::Param => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        // `/` is one empty segment after the leading slash.
        match parts.next() {
            None => true,
            Some("") => self.segments.is_empty() && parts.next().is_none(),
            Some(_) => false,
        }
    }
}

/// Assigns routes to events: templates first, then the heuristic route, then the cap.
pub struct RouteTable {
    templates: Vec<Template>,
    max_routes: usize,
    known: HashSet<String>,
    folded: Arc<AtomicU64>,
}

impl RouteTable {
    /// `known` are the routes already in the index, which keep their place under the cap;
    /// `folded` counts the events folded into `other`.
    pub fn new(
        templates: Vec<Template>,
        max_routes: usize,
        known: impl IntoIterator<Item = String>,
        folded: Arc<AtomicU64>,
    ) -> Self {
        Self { templates, max_routes, known: known.into_iter().collect(), folded }
    }

    /// Sets the event's route, if it has a path.
    pub fn assign(&mut self, ev: &mut Event) {
        let Some(path) = ev.path.as_deref() else { return };
        let path = crate::event::url_path(path);
        if let Some(t) = self.templates.iter().find(|t| t.matches(path)) {
            ev.route = Some(t.text.clone());
            return;
        }
        let Some(route) = ev.route.as_deref() else { return };
        if self.known.contains(route) {
            return;
        }
        if self.known.len() < self.max_routes {
            self.known.insert(route.to_string());
        } else {
            ev.route = Some(OTHER.to_string());
            self.folded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str) -> Event {
        let mut ev = Event::default();
        ev.set_target(path);
        ev
    }

    #[test]
    fn templates_win_over_heuristics() {
        let t = vec![Template::parse("/api/users/:name/orders").unwrap(), Template::parse("/static/*").unwrap()];
        let mut table = RouteTable::new(t, 100, [], Arc::default());
        for (path, route) in [
            ("/api/users/alice/orders", "/api/users/:name/orders"),
            ("/api/users/42/orders?page=2", "/api/users/:name/orders"),
            ("/api/users/42/orders/7", "/api/users/:id/orders/:id"),
            ("/static/css/site.css", "/static/*"),
            ("/api/users/42", "/api/users/:id"),
            ("http://example.test/static/a", "/static/*"),
        ] {
            let mut ev = event(path);
            table.assign(&mut ev);
            assert_eq!(ev.route.as_deref(), Some(route), "{path}");
        }
    }

    #[test]
    fn the_cap_folds_new_routes_into_other_and_counts_them() {
        let folded = Arc::new(AtomicU64::new(0));
        let mut table = RouteTable::new(Vec::new(), 2, ["/a".to_string()], folded.clone());
        let routes: Vec<String> = ["/a", "/b", "/c", "/b", "/d"]
            .iter()
            .map(|p| {
                let mut ev = event(p);
                table.assign(&mut ev);
                ev.route.unwrap()
            })
            .collect();
        assert_eq!(routes, ["/a", "/b", "other", "/b", "other"]);
        assert_eq!(folded.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(Template::parse("api/x").unwrap_err().contains("must start with '/'"));
        assert!(Template::parse("/a/*/b").unwrap_err().contains("last segment"));
        assert!(Template::parse("/").unwrap().matches("/"));
        assert!(!Template::parse("/").unwrap().matches("/a"));
        assert!(!Template::parse("/a/:x").unwrap().matches("/a/"));
    }
}
