//! The versioned data contract between Recap's `capture` and `analyze`.
//!
//! A run folder holds `manifest.json` ([`Manifest`]), `requests/part-NNNNN.parquet`
//! ([`requests::schema`]) and `events/part-NNNNN.parquet` ([`events::schema`]). What
//! `analyze` adds is defined here too: the [`analysis`] folder layout and tables,
//! `summary.json` ([`summary::Summary`]) and `sweep.json` ([`sweep::Sweep`]), so `plot` and
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
//! assert_eq!(SCHEMA_VERSION, 2);
//! ```

pub mod analysis;
pub mod dataset;
pub mod enums;
pub mod events;
pub mod manifest;
pub mod plan;
pub mod requests;
pub mod summary;
pub mod sweep;

pub use enums::{Api, Arrival, ErrorKind, EventKind, LoadMode, Phase, RunStatus, SessionHistory};
pub use manifest::Manifest;

/// Version of the tables' layout. Readers refuse files of a newer version with a clear error.
///
/// 2: `events.kind` gained `connect`, `connected`, `tls_done` and `retry`; a retried request
/// has one `sent` row per attempt (the last one counts). Version-1 runs read as before.
pub const SCHEMA_VERSION: u32 = 2;

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
/// Suffix of a segment still being written; renamed to `.parquet` only once its footer is on
/// disk, so every `*.parquet` file in a run is complete even after a crash.
pub const PARTIAL_SUFFIX: &str = ".parquet.partial";

/// Name of the `n`-th segment file (`part-00042.parquet`).
pub fn segment_file_name(n: u64) -> String {
    format!("part-{n:05}.parquet")
}

/// Key-value metadata every segment carries: schema version, run id and table name.
pub fn segment_metadata(run_id: &str, table: &str) -> Vec<(String, String)> {
    vec![
        (META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
        (META_RUN_ID.to_string(), run_id.to_string()),
        (META_TABLE.to_string(), table.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_lexically_in_write_order() {
        let mut names: Vec<String> = [10, 2, 100, 1].iter().map(|n| segment_file_name(*n)).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "part-00001.parquet",
                "part-00002.parquet",
                "part-00010.parquet",
                "part-00100.parquet"
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
