//! The versioned data contract between Recap's `capture` and `analyze`.
//!
//! A run folder holds `manifest.json` ([`Manifest`]), `requests/part-NNNNN.parquet`
//! ([`requests::schema`]) and `events/part-NNNNN.parquet` ([`events::schema`]). What
//! `analyze` adds is defined here too: the [`analysis`] folder layout and tables,
//! `summary.json` ([`summary::Summary`]), `sweep.json` ([`sweep::Sweep`]) and `analyze compare`'s
//! JSON ([`compare::Comparison`]), so `plot` and
//! scripts depend on this contract alone. Scripts outside
//! the project (DuckDB, pandas, Spark) read these files by the column names below, so names
//! only ever get added, never renamed; a breaking change bumps [`SCHEMA_VERSION`].
//!
//! This crate is Arrow-schema level only: no I/O, no runtime, so both the lean `capture`
//! binary and the heavier `analyze` can depend on it. `docs/schema.md` is the prose reference.
//!
//! ```
//! use recap_schemas::{events, SCHEMA_VERSION};
//! let schema = events::schema();
//! assert!(schema.field_with_name(events::T_NS).is_ok());
//! assert_eq!(SCHEMA_VERSION, 3);
//! ```

pub mod analysis;
pub mod compare;
pub mod dataset;
pub mod enums;
pub mod events;
pub mod live;
pub mod manifest;
pub mod plan;
pub mod requests;
pub mod scrapes;
pub mod server;
pub mod summary;
pub mod sweep;

pub use enums::{
    Api, Arrival, ErrorKind, EventKind, LoadMode, Phase, PlanRunStatus, RawMode, RunStatus, SessionHistory,
};
pub use manifest::{ClientHealth, Manifest};

/// Version of the tables' layout. Readers refuse files of a newer version with a clear error.
///
/// 2: `events.kind` gained `connect`, `connected`, `tls_done` and `retry`; a retried request
/// has one `sent` row per attempt (the last one counts). Version-1 runs read as before.
/// 3: the lossless record: `events` gained `raw`, `sse_event`, `choice_index`, the cached-token
/// and llama.cpp `timings` columns and `response_headers_json`; `requests` gained the client's
/// and the server's request ids; `error_kind` gained `server_error` and `incomplete`; segment
/// numbers have 10 digits. Older runs read as before (the new columns are null).
pub const SCHEMA_VERSION: u32 = 3;

/// Parquet key-value metadata key holding [`SCHEMA_VERSION`] as decimal text.
pub const META_SCHEMA_VERSION: &str = "recap.schema_version";
/// Parquet key-value metadata key holding the run's id (same as `manifest.json`'s `run_id`).
pub const META_RUN_ID: &str = "recap.run_id";
/// Parquet key-value metadata key naming the table (`requests` or `events`).
pub const META_TABLE: &str = "recap.table";

/// File name of the run manifest inside a run folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Sub-folder of a run holding the `requests` segments.
pub const REQUESTS_DIR: &str = "requests";
/// Sub-folder of a run holding the `events` segments.
pub const EVENTS_DIR: &str = "events";
/// Sub-folder of a run holding the `scrapes` segments (`capture --scrape` only).
pub const SCRAPES_DIR: &str = "scrapes";
/// Sub-folder of a sharded run (`capture --shard I/N`) holding one run folder per shard,
/// named by its index (`shards/0`, `shards/1`, ...); `analyze` reads them as one run.
pub const SHARDS_DIR: &str = "shards";
/// Columns, in any table, holding a time on the run's clock (ns since its start): what moves
/// when a shard's times are put on shard 0's timeline (`scrapes.t_ns` is spelled as
/// `events.t_ns`).
pub const CLOCK_COLUMNS: [&str; 3] = [requests::SCHEDULED_NS, events::T_NS, scrapes::END_NS];
/// Suffix of a segment still being written; renamed to `.parquet` only once its footer is on
/// disk, so every `*.parquet` file in a run is complete even after a crash.
pub const PARTIAL_SUFFIX: &str = ".parquet.partial";

/// Name of the `n`-th segment file (`part-0000000042.parquet`): ten digits hold every `u32`,
/// so names sort in write order at any count a writer can reach. Readers still order by
/// [`segment_number`], since runs of schema version 2 and older used five digits (and sort
/// wrongly as text past `part-99999`).
pub fn segment_file_name(n: u32) -> String {
    format!("part-{n:010}.parquet")
}

/// The number in a segment file name (`part-N.parquet`, any number of digits), `None` for
/// other names. Readers sort segments by it, never by the name's text.
pub fn segment_number(file_name: &str) -> Option<u64> {
    file_name.strip_prefix("part-")?.strip_suffix(".parquet")?.parse().ok()
}

/// Sorts segment paths in write order: by [`segment_number`], names without one last (by
/// text), so `part-100000` follows `part-99999` whatever the digit count.
pub fn sort_segments(paths: &mut [std::path::PathBuf]) {
    paths.sort_by_cached_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (segment_number(&name).map_or((1, 0), |n| (0, n)), name)
    });
}

/// Key-value metadata every segment carries: schema version, run id and table name.
pub fn segment_metadata(run_id: &str, table: &str) -> Vec<(String, String)> {
    vec![
        (META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
        (META_RUN_ID.to_string(), run_id.to_string()),
        (META_TABLE.to_string(), table.to_string()),
    ]
}

/// An error and its causes on one line, each once (`outer: cause: root cause`): how every Recap
/// tool writes an error into a file (`manifest.status_message`) or a log line. Errors keep
/// their cause as a `source` and do not repeat it in their own message
/// (`docs/architecture.md`, "Errors"); this is where the chain is spelled out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        // A message that already holds its cause (a foreign error, hyper's) is not repeated.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_lexically_in_write_order_past_100000() {
        let numbers = [100_001, 10, 2, 99_999, 100_000, 10_001, 1, u32::MAX];
        let mut names: Vec<String> = numbers.iter().map(|n| segment_file_name(*n)).collect();
        names.sort();
        let mut sorted = numbers;
        sorted.sort_unstable();
        let expected: Vec<String> = sorted.iter().map(|n| segment_file_name(*n)).collect();
        assert_eq!(names, expected);
        assert_eq!(names[0], "part-0000000001.parquet");
        for (name, n) in names.iter().zip(sorted) {
            assert_eq!(segment_number(name), Some(u64::from(n)));
        }
    }

    #[test]
    fn readers_order_old_five_digit_names_by_number() {
        // Version-2 names: as text, part-100000 sorts before part-10001.
        let mut paths: Vec<std::path::PathBuf> = [
            "part-100000.parquet",
            "notes.parquet",
            "part-10001.parquet",
            "part-99999.parquet",
        ]
        .iter()
        .map(|n| std::path::Path::new("events").join(n))
        .collect();
        sort_segments(&mut paths);
        let names: Vec<String> = paths
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            names,
            [
                "part-10001.parquet",
                "part-99999.parquet",
                "part-100000.parquet",
                "notes.parquet"
            ]
        );
    }

    #[test]
    fn metadata_names_version_run_and_table() {
        let md = segment_metadata("abc", "events");
        assert!(md.contains(&(META_SCHEMA_VERSION.into(), SCHEMA_VERSION.to_string())));
        assert!(md.contains(&(META_RUN_ID.into(), "abc".into())));
        assert!(md.contains(&(META_TABLE.into(), "events".into())));
    }
}
