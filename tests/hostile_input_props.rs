//! Property tests: no parser, the redactor or the rule transforms panic, loop or lose the raw
//! text on any input, including invalid structure, control characters and very long lines.

use logwarden::event::Event;
use logwarden::parse::{FileParser, FormatSpec, Kind};
use logwarden::pipeline::Pipeline;
use logwarden::redact::{Redactor, Replacement};
use logwarden::rules::Detector;
use logwarden::rules::transform::{Transform, apply};
use logwarden::source::SourceRecord;
use proptest::prelude::*;

/// The built-in rules, compiled once for all cases.
fn detector() -> &'static Detector {
    static DETECTOR: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
    DETECTOR.get_or_init(|| Detector::new(None, 5).expect("rules"))
}

/// Text that looks like log lines often enough to reach deep into the parsers.
fn loggy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,300}",
        r#"[0-9a-f:.]{1,40} - [a-z-]{1,8} \[[0-9A-Za-z/: +.-]{0,30}\] "[A-Z]{0,7} [ -~]{0,80}" [0-9-]{0,4} [0-9-]{0,6}( "[ -~]{0,30}"){0,3}( [0-9.]{0,8}){0,2}"#,
        r#"\{("[a-z_.]{1,10}":( ?"[ -~]{0,20}"|[0-9.e-]{1,10}|\{[ -~]{0,30}\}|\[[ -~]{0,20}\]|null|true),?){0,8}\}?"#,
        r#"([a-z_]{1,8}=("[ -~]{0,20}"|[^ ]{0,20}) ?){0,8}"#,
        r#"\[[0-9TZ:. -]{0,30}\] [A-Z]{0,6}: [A-Z]{0,6} [ -~]{0,40}( - [0-9]{0,3} \([0-9.]{0,5}(ms|s)?\))?(\n  [a-zA-Z]{1,10}: [ -~]{0,20}){0,4}"#,
        r#"#Fields: [a-z() -]{0,80}"#,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_and_keep_the_raw_text(line in loggy()) {
        for spec in [FormatSpec::Auto, FormatSpec::Fixed(Kind::Combined), FormatSpec::Fixed(Kind::Json), FormatSpec::Fixed(Kind::Logfmt),
                     FormatSpec::Fixed(Kind::Express), FormatSpec::Fixed(Kind::Alb), FormatSpec::Fixed(Kind::W3c), FormatSpec::Fixed(Kind::Haproxy),
                     FormatSpec::Fixed(Kind::ErrorLog)] {
            let mut parser = FileParser::new(spec);
            let rec = SourceRecord::of_text("p", 0, line.clone(), Vec::new());
            let ev = Pipeline::event_of(&mut parser, &rec.origin, rec.text.clone(), rec.flags.clone());
            prop_assert_eq!(&ev.raw, &line);
        }
    }

    #[test]
    fn redaction_never_panics_and_is_idempotent(text in loggy()) {
        let r = Redactor::new(&["x-custom".to_string()], Replacement::Fixed);
        let once = r.scrub(&text).unwrap_or_else(|| text.clone());
        let twice = r.scrub(&once).unwrap_or_else(|| once.clone());
        prop_assert_eq!(once, twice);
        let ev = Event { raw: text.clone(), query: Some(text.clone()), ..Event::default() };
        let _ = r.redact(ev);
    }

    #[test]
    fn transforms_and_rules_never_panic(text in loggy()) {
        let _ = apply(&text, &Transform::ALL);
        let ev = Event { method: Some("GET".into()), path: Some(text.clone()), query: Some(text.clone()), user_agent: Some(text.clone()), ..Event::default() };
        let _ = detector().tags(&ev);
    }
}

#[test]
fn huge_and_deep_inputs_are_handled() {
    let mut parser = FileParser::new(FormatSpec::Auto);
    let deep = "{\"a\":".repeat(10_000) + &"}".repeat(10_000);
    let huge = "x".repeat(10 * 1024 * 1024);
    let escapes = "\u{1b}[31m\u{1b}]0;title\u{7}".repeat(1000);
    for line in [deep, huge, escapes] {
        let rec = SourceRecord::of_text("p", 0, line.clone(), Vec::new());
        let ev = Pipeline::event_of(&mut parser, &rec.origin, rec.text.clone(), rec.flags.clone());
        assert_eq!(ev.raw.len(), line.len());
        let _ = Redactor::new(&[], Replacement::Fixed).redact(ev);
    }
}
