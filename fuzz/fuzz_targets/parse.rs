//! Every parser, on any bytes: no panic, no runaway time or memory, and the raw line is kept
//! whether it parsed or not. The first line of the input, when it starts with `nginx:` or
//! `apache:`, is a log format compiled into a parser for the rest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logwarden::parse::custom::CustomFormat;
use logwarden::parse::{FileParser, FormatSpec, Kind};
use logwarden::pipeline::Pipeline;
use logwarden::source::SourceRecord;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (custom, line) = match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("nginx:") => (CustomFormat::nginx(&first[6..]).ok(), rest),
        Some((first, rest)) if first.starts_with("apache:") => (CustomFormat::apache(&first[7..]).ok(), rest),
        _ => (None, &*text),
    };
    let mut specs: Vec<FormatSpec> = Kind::ALL.into_iter().map(FormatSpec::Fixed).collect();
    specs.push(FormatSpec::Auto);
    specs.extend(custom.map(|c| FormatSpec::Custom(c.into())));
    for spec in specs {
        let mut parser = FileParser::new(spec);
        let rec = SourceRecord::of_text("fuzz.log", 0, line.to_string(), Vec::new());
        let ev = Pipeline::event_of(&mut parser, &rec.origin, rec.text.clone(), rec.flags.clone());
        assert_eq!(ev.raw, line, "the raw line is kept");
    }
});
