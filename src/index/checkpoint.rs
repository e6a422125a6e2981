//! File positions stored in the tantivy commit payload, so that index and positions move
//! together.
//!
//! Events are partitioned by day, one tantivy index per day, and one commit round may touch
//! several partitions (a backfill crossing midnight). Tantivy commits each index atomically but
//! not several at once, so every payload records the round: its generation, the partitions it
//! touched, the positions after it and the positions before it. On restart, if every partition
//! of the newest round committed, reading resumes from that round's positions; if a crash cut
//! the round short, reading resumes from the round before and the events up to the newest
//! positions are replaced by id rather than added, so none is lost and none is doubled.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Fingerprint -> offset of the first byte not yet indexed.
pub type Positions = BTreeMap<String, u64>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub generation: u64,
    pub round: Vec<String>,
    pub positions: Positions,
    pub previous: Positions,
}

/// Where to resume after a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    pub generation: u64,
    /// Where each file resumes.
    pub resume: Positions,
    /// Up to where (exclusive) replayed events may already be in some partition.
    pub replace_until: Positions,
}

/// Works out the resume positions from each partition's last payload.
pub fn recover(partitions: &BTreeMap<String, Option<Payload>>) -> Recovery {
    let Some(newest) = partitions.values().flatten().max_by_key(|p| p.generation) else {
        return Recovery::default();
    };
    let complete = newest
        .round
        .iter()
        .all(|name| partitions.get(name).is_none_or(|p| p.as_ref().is_some_and(|p| p.generation == newest.generation)));
    if complete {
        Recovery { generation: newest.generation, resume: newest.positions.clone(), replace_until: Positions::new() }
    } else {
        Recovery {
            generation: newest.generation,
            resume: newest.previous.clone(),
            replace_until: newest.positions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(generation: u64, round: &[&str], pos: u64, prev: u64) -> Option<Payload> {
        Some(Payload {
            generation,
            round: round.iter().map(|s| s.to_string()).collect(),
            positions: [("f".to_string(), pos)].into(),
            previous: [("f".to_string(), prev)].into(),
        })
    }

    #[test]
    fn complete_round_resumes_from_its_positions() {
        let parts =
            [("d1".to_string(), payload(3, &["d1"], 30, 20)), ("d0".to_string(), payload(1, &["d0"], 10, 0))].into();
        let r = recover(&parts);
        assert_eq!(r.resume["f"], 30);
        assert!(r.replace_until.is_empty());
    }

    #[test]
    fn interrupted_round_replays_with_replacement() {
        // Round 4 touched d1 and d2; only d1 committed before the crash.
        let parts =
            [("d1".to_string(), payload(4, &["d1", "d2"], 40, 30)), ("d2".to_string(), payload(2, &["d2"], 20, 10))]
                .into();
        let r = recover(&parts);
        assert_eq!(r.resume["f"], 30);
        assert_eq!(r.replace_until["f"], 40);
    }

    #[test]
    fn empty_data_dir() {
        assert_eq!(recover(&BTreeMap::new()), Recovery::default());
        let parts = [("d1".to_string(), None)].into();
        assert_eq!(recover(&parts), Recovery::default());
    }
}
