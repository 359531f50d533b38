//! Where analyze reads runs and keeps its own files: the one door to storage.
//!
//! - [`run`]: a run folder: manifest, closed segments in write order, SQL tables.
//! - [`parquet`]: Parquet files as analyze writes and reads them, row group by row group; CSV.
//! - [`records`]: `records.parquet` and `texts.parquet`, the reassembled run, cached.
//! - [`icl`]: `icl.parquet`, every inter-chunk gap, and its exact distribution.
//! - [`tokens`]: `tokens.parquet`, one tokenizer's counts by text key.
//! - [`user_cache`]: the user's cache folder, shared by every run: compiled tokenizers.
//!
//! [`Caches`] answers the one question `analyze report` asks storage: for this run, where do
//! the records, texts and gaps come from (the caches, if built from exactly these segments, or
//! the events, with new caches written on the way), and it applies the cache failure policy.
//!
//! One failure policy for caches (`tokens.parquet`, `records.parquet`, `texts.parquet`): a
//! cache that is stale or cannot be read is rebuilt, one that cannot be written is a warning
//! naming the file, never a failed analysis. Outputs (`metrics.parquet`, `icl.parquet`, the
//! summaries) fail the analysis when they cannot be written.
//!
//! Imports run one way: `records`, `icl`, `tokens`, `run` -> `parquet`; nothing here imports
//! the modules that compute (`report`, `metrics`, `tokenize`).

pub mod icl;
pub mod object;
pub mod parquet;
pub mod records;
pub mod run;
pub mod tokens;
pub mod user_cache;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use run::RunFolder;

use crate::keys::{text_hash, TextKey};
use crate::reassemble::RequestRecord;
use crate::Result;
use icl::GapsFile;
use records::{RecordsFile, TextsFile};

/// Parquet key-value metadata holding the [`fingerprint`] a cache was built from.
const META_FINGERPRINT: &str = "recap.records.fingerprint";
/// Bumped whenever the caches' columns or meaning change, so older files are rebuilt.
const FORMAT: &str = "recap-records-4";

/// Identifies the segments a run's records come from: each segment's table, name and size
/// (closed segments are never rewritten), and the caches' format. Independent of how the
/// run's path was typed or where the folder was copied to.
pub fn fingerprint<'a>(segments: impl IntoIterator<Item = &'a PathBuf>) -> String {
    let mut key = String::from(FORMAT);
    for f in segments {
        let size = if object::is_remote(f) {
            object::size(f)
        } else {
            std::fs::metadata(f).map_or(0, |m| m.len())
        };
        let name = |p: Option<&Path>| {
            p.and_then(Path::file_name)
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        key.push_str(&format!("|{}/{}:{size}", name(f.parent()), name(Some(f))));
    }
    format!("{FORMAT}-{:032x}", text_hash(&key))
}

/// Whether the cache at `path` was built from the segments `fingerprint` names.
fn built_from(path: &Path, fingerprint: &str) -> bool {
    parquet::footer(path)
        .is_ok_and(|md| parquet::footer_value(md.file_metadata(), META_FINGERPRINT) == Some(fingerprint))
}

/// Applies the cache failure policy to the result of writing the cache `what` at `path`:
/// `false` (after a warning naming the file) when it failed.
pub fn cache_written(what: &str, path: &Path, r: Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "could not write the {what} cache {}: {}; the next analysis rebuilds it",
                path.display(),
                recap_schemas::error_chain(&e)
            );
            false
        }
    }
}

/// A run's caches under `<run>/analysis/`, for the segments it has now.
#[derive(Debug, Clone)]
pub struct Caches {
    fingerprint: String,
    records: PathBuf,
    texts: PathBuf,
    gaps: PathBuf,
    itl: PathBuf,
}

/// The caches being written during a pass over the events (each `None` once it failed).
pub struct Writers {
    records: Option<RecordsFile>,
    texts: Option<TextsFile>,
    paths: Caches,
}

/// [`Writers`] running on their own thread ([`Writers::in_background`]).
pub struct BackgroundWriters {
    tx: Option<std::sync::mpsc::SyncSender<Vec<RequestRecord>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundWriters {
    /// Hands finished records (and their texts) to the writers' thread.
    pub fn write(&self, records: Vec<RequestRecord>) {
        // A send fails only when the thread is gone, which `finish` reports.
        if let Some(tx) = &self.tx {
            let _ = tx.send(records);
        }
    }

    /// Waits until every cache is finished.
    pub fn finish(mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::warn!("the caches' writer stopped early; the next analysis reads the events again");
            }
        }
    }
}

impl Caches {
    /// The caches of `run`, the gaps file in the analysis folder `dir`.
    pub fn of(run: &RunFolder, dir: &Path) -> Self {
        Caches {
            fingerprint: fingerprint(run.requests.iter().chain(&run.events)),
            records: recap_schemas::analysis::records_path(&run.dir),
            texts: recap_schemas::analysis::texts_path(&run.dir),
            gaps: dir.join(recap_schemas::analysis::ICL_FILE),
            itl: dir.join(recap_schemas::analysis::ITL_FILE),
        }
    }

    /// `itl.parquet` to write (a per-token `--itl`): always new, since it depends on the
    /// definition and the tokenizer as well as on the segments.
    pub fn itl_writer(&self) -> Result<GapsFile> {
        GapsFile::create(&self.itl, &self.fingerprint)
    }

    /// The `itl_ms` distribution of the requests `counted` accepts when this scoring wrote
    /// `itl.parquet` (`per_token`); otherwise `None`, and an `itl.parquet` left by an earlier
    /// scoring is removed so the folder holds only what its summary describes.
    pub fn itl_distribution(
        &self,
        per_token: bool,
        counted: &dyn Fn(u64) -> bool,
    ) -> Result<Option<recap_schemas::summary::Distribution>> {
        if per_token {
            return icl::distribution(&self.itl, counted).map(Some);
        }
        // Best effort, as for any stale file: its absence is what matters, not a failure.
        let _ = std::fs::remove_file(&self.itl);
        Ok(None)
    }

    /// `icl.parquet` to write, or `None` when the one there was built from these segments.
    /// An output, not a cache: failing to write it fails the analysis.
    pub fn gaps_writer(&self) -> Result<Option<GapsFile>> {
        if built_from(&self.gaps, &self.fingerprint) {
            return Ok(None);
        }
        GapsFile::create(&self.gaps, &self.fingerprint).map(Some)
    }

    /// Whether the records can be read from the caches instead of the events,
    /// counting first, through `count`, every output text `known` lacks (from `texts.parquet`,
    /// a batch at a time).
    /// `false` when some cache is stale or lacks a text: the caller reads the events.
    pub fn reusable<S>(
        &self,
        state: &mut S,
        known: impl Fn(&S, TextKey) -> bool,
        mut count: impl FnMut(&mut S, &records::KeyedTexts<'_>) -> Result<()>,
    ) -> Result<bool> {
        if !records::valid(&self.records, &self.fingerprint) {
            return Ok(false);
        }
        tracing::info!("reusing reassembled records from {}", self.records.display());
        let mut missing: HashSet<TextKey, ahash::RandomState> = HashSet::default();
        let keys = records::read_keys(&self.records, &mut |keys| {
            missing.extend(keys.iter().filter(|k| !known(state, **k)));
            Ok(())
        });
        if let Err(e) = keys {
            // An unreadable cache is rebuilt, not a failed analysis.
            tracing::warn!(
                "ignoring the unreadable cache {}: {}; reading the events",
                self.records.display(),
                recap_schemas::error_chain(&e)
            );
            return Ok(false);
        }
        if missing.is_empty() {
            return Ok(true);
        }
        if !built_from(&self.texts, &self.fingerprint) {
            return Ok(false);
        }
        tracing::info!("counting new texts from {}", self.texts.display());
        records::read_texts(&self.texts, &mut |pairs| {
            let todo: Vec<(TextKey, &str)> = pairs.iter().filter(|(k, _)| missing.contains(k)).copied().collect();
            count(state, &todo)?;
            for (k, _) in &todo {
                missing.remove(k);
            }
            Ok(())
        })?;
        Ok(missing.is_empty())
    }

    /// Reads the cached records, a batch at a time (after [`Caches::reusable`] said yes).
    pub fn read_records(&self, each: &mut dyn FnMut(Vec<RequestRecord>) -> Result<()>) -> Result<()> {
        records::read(&self.records, each)
    }

    /// Starts new caches for a pass over the events (a cache that cannot be started is a
    /// warning and is skipped).
    pub fn writers(&self) -> Writers {
        fn open<T>(what: &str, path: &Path, create: impl FnOnce(&Path, &str) -> Result<T>, fp: &str) -> Option<T> {
            match create(path, fp) {
                Ok(f) => Some(f),
                Err(e) => {
                    cache_written(what, path, Err(e));
                    None
                }
            }
        }
        Writers {
            records: open(
                "reassembled records",
                &self.records,
                RecordsFile::create,
                &self.fingerprint,
            ),
            texts: open("output texts", &self.texts, TextsFile::create, &self.fingerprint),
            paths: self.clone(),
        }
    }

    /// The `icl_ms` distribution of the gaps of the requests `counted` accepts.
    pub fn icl_distribution(&self, counted: &dyn Fn(u64) -> bool) -> Result<recap_schemas::summary::Distribution> {
        icl::distribution(&self.gaps, counted)
    }
}

impl Writers {
    /// Appends finished records and their texts (those at hand).
    pub fn write(&mut self, records: &[RequestRecord]) {
        if let Some(f) = &mut self.texts {
            let texts = records.iter().filter_map(|r| Some((r.hashes, r.texts.as_ref()?)));
            let r = f.write(texts.flat_map(|(h, t)| {
                [
                    (h.reasoning, t.reasoning.as_str()),
                    (h.content, t.content.as_str()),
                    (h.tool_args, t.tool_args.as_str()),
                ]
            }));
            if !cache_written("output texts", &self.paths.texts, r) {
                self.texts = None;
            }
        }
        if let Some(f) = &mut self.records {
            if !cache_written("reassembled records", &self.paths.records, f.write(records)) {
                self.records = None;
            }
        }
    }

    /// The same writers on a thread of their own, so that compressing the caches (zstd over
    /// every output text) overlaps counting instead of holding up the pass.
    pub fn in_background(self) -> BackgroundWriters {
        // One batch queued while one is written: memory holds at most two batches' texts.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<RequestRecord>>(1);
        let thread = std::thread::Builder::new().name("recap-caches".into()).spawn(move || {
            let mut w = self;
            for records in rx {
                w.write(&records);
            }
            w.finish();
        });
        match thread {
            Ok(thread) => BackgroundWriters {
                tx: Some(tx),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::warn!("the caches are not written: no thread for them: {e}");
                BackgroundWriters { tx: None, thread: None }
            }
        }
    }

    /// Finishes every cache still being written.
    pub fn finish(self) {
        if let Some(f) = self.records {
            cache_written("reassembled records", &self.paths.records, f.finish());
        }
        if let Some(f) = self.texts {
            cache_written("output texts", &self.paths.texts, f.finish());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_where_the_run_is() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let mut files = Vec::new();
        for dir in [a.path(), b.path()] {
            std::fs::create_dir_all(dir.join("events")).expect("mkdir");
            let f = dir.join("events").join("part-00000.parquet");
            std::fs::write(&f, b"1234").expect("write");
            files.push(f);
        }
        assert_eq!(fingerprint([&files[0]]), fingerprint([&files[1]]));
        std::fs::write(&files[1], b"12345").expect("grow");
        assert_ne!(
            fingerprint([&files[0]]),
            fingerprint([&files[1]]),
            "a changed size is another run"
        );
    }

    #[test]
    fn an_unwritable_cache_is_skipped_and_the_others_are_still_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let caches = Caches {
            fingerprint: "fp".into(),
            records: dir.path().join("records.parquet"),
            texts: dir.path().join("texts.parquet"),
            gaps: dir.path().join("icl.parquet"),
            itl: dir.path().join("itl.parquet"),
        };
        // A folder where the records' temporary file goes: unwritable, even for root.
        std::fs::create_dir_all(dir.path().join("records.parquet.tmp")).expect("mkdir");
        let mut w = caches.writers();
        assert!(w.records.is_none(), "the unwritable cache is skipped");
        assert!(w.texts.is_some());
        w.write(&[]);
        w.finish();
        assert!(!caches.records.exists());
        assert!(
            built_from(&caches.texts, "fp"),
            "the other cache is written and tagged with the segments it came from"
        );
        assert!(!cache_written(
            "test",
            Path::new("/x"),
            Err(crate::Error::Internal("boom".into()))
        ));
    }
}
