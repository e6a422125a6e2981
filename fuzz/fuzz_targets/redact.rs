//! The redactor on any text: no panic, and a second pass only ever hides more: whatever it
//! leaves outside its `[REDACTED]` markers was already there, in order, after the first. (On
//! well-formed text the second pass changes nothing at all; unit tests hold that. On garbage,
//! text around a marker can read as a new key, and the second pass then hides a little more.)
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
    let mut rest = once.as_str();
    for piece in twice.split("[REDACTED]") {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => panic!("the second pass revealed {piece:?}\nonce:  {once:?}\ntwice: {twice:?}"),
        }
    }
    let ev = Event { raw: text.clone(), query: Some(text.clone()), user_agent: Some(text), ..Event::default() };
    let _ = r.redact(ev);
});
