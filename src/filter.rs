//! Skip rules evaluated after parsing: health checks and static assets are counted but not
//! indexed (each default can be switched off), plus the user's own rules.

use rustc_hash::FxHashSet;

use crate::config::{FilterConfig, SkipRule};
use crate::event::Event;

#[derive(Debug, Clone)]
pub struct Filter {
    // Sets of the configuration's own: a path looked up cannot add to them, so no input can
    // make their hashes collide, and the cheap FxHash is safe.
    health_paths: FxHashSet<String>,
    static_extensions: FxHashSet<String>,
    rules: Vec<SkipRule>,
}

/// Why an event was not indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    HealthCheck,
    StaticAsset,
    Rule,
}

impl Filter {
    pub fn new(cfg: &FilterConfig) -> Self {
        Self {
            health_paths: if cfg.skip_health_checks {
                cfg.health_paths.iter().cloned().collect()
            } else {
                FxHashSet::default()
            },
            static_extensions: if cfg.skip_static_assets {
                cfg.static_extensions.iter().map(|e| e.trim_start_matches('.').to_ascii_lowercase()).collect()
            } else {
                FxHashSet::default()
            },
            rules: cfg.skip.clone(),
        }
    }

    /// `Some(reason)` when the event should not be indexed. Unparsed lines are always kept.
    pub fn skip(&self, ev: &Event) -> Option<SkipReason> {
        if ev.parse_error.is_some() {
            return None;
        }
        let path = ev.path.as_deref().unwrap_or("");
        if !self.health_paths.is_empty() && self.health_paths.contains(path.trim_end_matches('/')) {
            return Some(SkipReason::HealthCheck);
        }
        if !self.static_extensions.is_empty()
            && let Some((_, ext)) = path.rsplit('/').next().unwrap_or("").rsplit_once('.')
            && self.static_extensions.contains(&ext.to_ascii_lowercase())
            && ev.status.is_none_or(|s| s < 400)
        {
            return Some(SkipReason::StaticAsset);
        }
        self.rules.iter().any(|r| matches(r, ev, path)).then_some(SkipReason::Rule)
    }
}

fn matches(r: &SkipRule, ev: &Event, path: &str) -> bool {
    let any = r.path_prefix.is_some() || r.method.is_some() || r.status.is_some() || r.user_agent_contains.is_some();
    any && r.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.as_str()))
        && r.method.as_ref().is_none_or(|m| ev.method.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)))
        && r.status.is_none_or(|s| ev.status == Some(s))
        && r.user_agent_contains
            .as_ref()
            .is_none_or(|u| ev.user_agent.as_deref().is_some_and(|x| x.contains(u.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(path: &str, status: u16) -> Event {
        Event { path: Some(path.into()), status: Some(status), method: Some("GET".into()), ..Event::default() }
    }

    #[test]
    fn defaults_skip_health_and_static_but_not_failures() {
        let f = Filter::new(&FilterConfig::default());
        assert_eq!(f.skip(&ev("/healthz", 200)), Some(SkipReason::HealthCheck));
        assert_eq!(f.skip(&ev("/app.CSS", 200)), Some(SkipReason::StaticAsset));
        assert_eq!(f.skip(&ev("/app.css", 404)), None, "a failing asset is worth seeing");
        assert_eq!(f.skip(&ev("/api/users", 200)), None);
        let unparsed = Event { parse_error: Some("x".into()), ..ev("/healthz", 200) };
        assert_eq!(f.skip(&unparsed), None);
    }

    #[test]
    fn defaults_can_be_switched_off_and_rules_added() {
        let cfg = FilterConfig {
            skip_health_checks: false,
            skip_static_assets: false,
            skip: vec![SkipRule { method: Some("options".into()), ..SkipRule::default() }],
            ..FilterConfig::default()
        };
        let f = Filter::new(&cfg);
        assert_eq!(f.skip(&ev("/healthz", 200)), None);
        assert_eq!(f.skip(&ev("/a.js", 200)), None);
        let mut o = ev("/x", 204);
        o.method = Some("OPTIONS".into());
        assert_eq!(f.skip(&o), Some(SkipReason::Rule));
    }
}
