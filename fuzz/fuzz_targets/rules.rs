//! The rule transforms and the whole built-in rule pack on any request line: no panic, no
//! runaway time on hostile input (libFuzzer's per-input timeout catches a slow case).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use logwarden::parse::{FileParser, FormatSpec, Kind};
use logwarden::pipeline::Pipeline;
use logwarden::rules::Detector;
use logwarden::rules::transform::{Transform, apply};
use logwarden::source::SourceRecord;

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| Detector::new(None, 5).expect("the built-in rules compile"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for t in Transform::ALL {
        let _ = apply(&text, &[t]);
    }
    let _ = apply(&text, &Transform::ALL);
    // As a request path in a combined line, so every target (path, query, arguments) is fed.
    let line =
        format!("203.0.113.9 - - [29/Nov/2026:10:00:00 +0000] \"GET {text} HTTP/1.1\" 200 1 \"-\" \"Mozilla/5.0\"");
    for (raw, spec) in [(line, FormatSpec::Fixed(Kind::Combined)), (text.to_string(), FormatSpec::Auto)] {
        let mut parser = FileParser::new(spec);
        let rec = SourceRecord::of_text("fuzz.log", 0, raw, Vec::new());
        let ev = Pipeline::event_of(&mut parser, &rec.origin, rec.text.clone(), rec.flags.clone());
        let _ = detector().tags(&ev);
    }
});
