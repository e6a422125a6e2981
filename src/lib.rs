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

/// glibc gives each thread that allocates an arena of its own (up to eight per core), and memory
/// freed by the pipeline's threads stays spread over them. `cargo bench --bench ingest` peaked
/// at 558 MiB; with four arenas 439 MiB at the same speed and CPU time; with two, 386 MiB but
/// 40 % more CPU spent waiting on the allocator's locks. Four arenas, then, unless
/// `MALLOC_ARENA_MAX` says otherwise. Call it first, before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes the allocator's own locks and only sets one of its tuning
        // parameters; no memory is touched.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    }
}

/// Hands the allocator's free pages back to the system. glibc keeps what a burst freed (a
/// flushed index segment, a batch of parsed events) in its arenas for reuse; between bursts
/// that is resident memory doing nothing. The index loop calls this every few commits.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's locks and only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
