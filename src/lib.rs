//! logwarden reads request logs as they are written and makes every request searchable within
//! about a second, without writing a secret to disk.
//!
//! Events flow one way, and each module only uses the ones before it plus the shared leaves
//! (`event`, `metrics`, `config`):
//!
//! ```text
//! source -> parse -> filter -> redact -> index -> api
//!    \________ pipeline (one thread, file order) ____/
//! ```
//!
//! - `source` finds files by glob, names them by content and follows them through rotation;
//!   it emits records (lines, or multi-line entries) with their byte offsets.
//! - `parse` turns a record into an [`event::Event`], one module per log format.
//! - `filter` drops health checks and static assets from the index (they are still counted).
//! - `redact` is the only way to build the [`redact::Redacted`] value that `index` accepts.
//! - `index` writes day partitions with tantivy and stores file positions in each commit.
//! - `api` serves search and health over HTTP; `daemon` wires everything together.

pub mod alert;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod event;
pub mod filter;
pub mod index;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod redact;
pub mod rules;
pub mod sink;
pub mod source;
pub mod stats;

/// The allocator of the binary and the benchmarks. mimalloc keeps small allocations per thread
/// and frees them without locks; the pipeline allocates a few strings per event on one thread
/// and frees them on another. Over 10,000,000 lines `logwarden ingest` went from 56,745 to
/// 66,405 lines/s (338 to 293 CPU s) and its peak RSS from 370 to 328 MiB. It is built without
/// transparent huge pages (`no_thp`): with them, the 1,000,000-line ingest was 7 % faster but
/// peaked 40 MiB higher, and memory is the scarcer of the two on the host a log daemon shares.
pub type Allocator = mimalloc::MiMalloc;

/// mimalloc's number for its purge delay (`mi_option_e` in its `mimalloc.h`, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes the allocators; call it first, before any thread starts.
///
/// mimalloc hands freed pages back to the system a second after they were freed; bursts of
/// parsed events and index segments then overlap. At once instead: the 1,000,000-line ingest
/// peaked at 211-216 MiB instead of 287, at the same speed. `MIMALLOC_PURGE_DELAY` overrides.
///
/// glibc's malloc still serves the C libraries (zstd). It would give each thread that
/// allocates an arena of its own; four arenas, unless `MALLOC_ARENA_MAX` says otherwise.
pub fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's tuning options; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes the allocator's own locks and only sets one of its tuning
        // parameters; no memory is touched.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    }
}

/// Hands glibc's free pages back to the system. glibc keeps what a burst freed (the C
/// libraries' buffers, or everything when another allocator is not in place) in its arenas for
/// reuse; between bursts that is resident memory doing nothing. The index loop calls this
/// every few commits.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's locks and only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mimalloc_option_tuned_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("skipped: MIMALLOC_PURGE_DELAY is set in the environment");
            return;
        }
        // SAFETY: reads one of mimalloc's options.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // The purge delay's default in the mimalloc built here (ms), which no other option has.
        assert_eq!(get(), 1000);
        tune_allocator();
        assert_eq!(get(), 0);
    }
}
