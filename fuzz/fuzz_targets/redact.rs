//! The redactor on any text: no panic, and redacting twice changes nothing more (what it left
//! is not mistaken for a secret on a second look, and no secret survives the first).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use logwarden::event::Event;
use logwarden::redact::{Redactor, Replacement};

fn redactor() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(|| Redactor::new(&["x-custom".to_string()], Replacement::Fixed))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let r = redactor();
    let once = r.scrub(&text).unwrap_or_else(|| text.clone());
    let twice = r.scrub(&once).unwrap_or_else(|| once.clone());
    assert_eq!(once, twice, "redaction is idempotent");
    let ev = Event { raw: text.clone(), query: Some(text.clone()), user_agent: Some(text), ..Event::default() };
    let _ = r.redact(ev);
});
