//! Where analyze's files are read and written: Parquet writes, footers and their key-value
//! tags, the fingerprint of a run's segments, and the caches built on them.
//!
//! One failure policy for caches (`tokens.parquet`, `records.parquet`, `icl.parquet`): a
//! cache that cannot be read is rebuilt, one that cannot be written is a warning, never a
//! failed analysis. Outputs (`metrics.parquet`, summaries) fail the analysis when they cannot
//! be written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use recap_schemas::summary::Distribution;

use crate::{Error, Result};

/// Parquet key-value metadata holding the [`fingerprint`] a cache was built from.
pub(crate) const META_FINGERPRINT: &str = "recap.records.fingerprint";
/// Footer key of `tokens.parquet`: the engine that counted ([`crate::tokenize::Counter::engine_label`]).
pub(crate) const META_TOKENIZER_ENGINE: &str = "recap.tokenizer_engine";
/// Bumped whenever the caches' columns or meaning change, so older files are rebuilt.
const FORMAT: &str = "recap-records-4";

/// A text's key in the caches: 128-bit XXH3, so that two different texts of a run (or of the
/// hundreds of runs one cache folder may see) practically never share a key (a 64-bit key
/// reaches even odds of one collision around 5 billion texts; 128 bits never will).
pub type TextKey = u128;

/// XXH3-128 of `text`: a stable key for identical texts (and for the token-count cache).
pub fn text_hash(text: &str) -> TextKey {
    twox_hash::XxHash3_128::oneshot(text.as_bytes())
}

/// A key derived from another under a `seed` (another key), e.g. a chat input's count key
/// from its messages' key and the template that renders them: XXH3-128 of both keys' bytes.
pub fn derived_key(seed: TextKey, key: TextKey) -> TextKey {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(&seed.to_le_bytes());
    bytes[16..].copy_from_slice(&key.to_le_bytes());
    twox_hash::XxHash3_128::oneshot(&bytes)
}

/// A key as the caches store it (`FixedSizeBinary(16)`, little-endian).
pub fn key_bytes(key: TextKey) -> [u8; 16] {
    key.to_le_bytes()
}

/// A stored key back; `None` for a value of another width.
pub fn key_from_bytes(bytes: &[u8]) -> Option<TextKey> {
    Some(TextKey::from_le_bytes(bytes.try_into().ok()?))
}

/// Identifies the segments a run's records come from: each segment's table, name and size
/// (closed segments are never rewritten), and the caches' format. Independent of how the
/// run's path was typed or where the folder was copied to.
pub fn fingerprint<'a>(segments: impl IntoIterator<Item = &'a PathBuf>) -> String {
    let mut key = String::from(FORMAT);
    for f in segments {
        let size = std::fs::metadata(f).map_or(0, |m| m.len());
        let name = |p: Option<&Path>| {
            p.and_then(Path::file_name)
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        key.push_str(&format!("|{}/{}:{size}", name(f.parent()), name(Some(f))));
    }
    format!("{FORMAT}-{:032x}", text_hash(&key))
}

/// Applies the cache failure policy to the result of writing the cache `what` at `path`.
pub fn cache_written(what: &str, path: &Path, r: Result<()>) {
    if let Err(e) = r {
        tracing::warn!(
            "could not write the {what} cache {}: {e}; the next analysis rebuilds it",
            path.display()
        );
    }
}

/// A zstd Parquet file written batch by batch beside its final name and renamed when
/// finished, so a reader never sees half a file (and a failed analysis leaves none).
pub(crate) struct ParquetFile {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl ParquetFile {
    /// Starts `path` with `schema` and `metadata` as footer key-value pairs.
    pub(crate) fn create(path: &Path, schema: arrow_schema::SchemaRef, metadata: &[(&str, &str)]) -> Result<Self> {
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        let kv: Vec<parquet::file::metadata::KeyValue> = metadata
            .iter()
            .map(|(k, v)| parquet::file::metadata::KeyValue::new((*k).to_string(), (*v).to_string()))
            .collect();
        // Mostly numbers with few repeats: dictionary encoding costs more than it saves here.
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_dictionary_enabled(false)
            .set_key_value_metadata((!kv.is_empty()).then_some(kv))
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| encode(path, e))?;
        Ok(ParquetFile {
            writer,
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Appends `batch`.
    pub(crate) fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| encode(&self.path, e))?;
        // Keep the encoder's buffered row group small: memory is bounded by in-flight work.
        if self.writer.in_progress_size() > 64 << 20 {
            self.writer.flush().map_err(|e| encode(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes the footer and moves the file to its name.
    pub(crate) fn finish(self) -> Result<()> {
        self.writer.close().map_err(|e| encode(&self.path, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

fn encode(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("writing {}: {e}", path.display()))
}

/// Writes one batch as a zstd Parquet file ([`ParquetFile`]), with `metadata` as key-value
/// pairs.
pub(crate) fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch, metadata: &[(&str, &str)]) -> Result<()> {
    let mut f = ParquetFile::create(path, batch.schema(), metadata)?;
    f.write(batch)?;
    f.finish()
}

/// Whether the cache at `path` was built from the segments `fingerprint` names.
pub(crate) fn built_from(path: &Path, fingerprint: &str) -> bool {
    footer(path).is_ok_and(|md| footer_value(md.file_metadata(), META_FINGERPRINT) == Some(fingerprint))
}

/// `batches` as CSV text with a header line (arrow-csv: quoting and number formats as every
/// other CSV Recap writes).
pub fn csv(batches: &[arrow_array::RecordBatch]) -> Result<String> {
    let mut out = Vec::new();
    {
        let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(&mut out);
        for b in batches {
            w.write(b).map_err(|e| Error::Internal(format!("writing CSV: {e}")))?;
        }
    }
    String::from_utf8(out).map_err(|e| Error::Internal(format!("CSV is not UTF-8: {e}")))
}

/// The footer (metadata) of the Parquet file at `path`, or why it cannot be read.
pub(crate) fn footer(path: &Path) -> std::result::Result<ParquetMetaData, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| e.to_string())
}

/// The value of key-value metadata `key` in a Parquet footer, if any.
pub(crate) fn footer_value<'a>(md: &'a FileMetaData, key: &str) -> Option<&'a str> {
    md.key_value_metadata()?
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_deref())
}

/// `icl.parquet`, written as requests finish: every inter-chunk gap (`request_id`, `gap_ns`)
/// for plots of the ICL distribution (the per-request table has one row per request), tagged
/// with the segments' fingerprint so a re-analysis reads it instead of the events.
pub(crate) struct GapsFile(ParquetFile);

impl GapsFile {
    /// Starts `path`.
    pub(crate) fn create(path: &Path, fingerprint: &str) -> Result<Self> {
        ParquetFile::create(
            path,
            recap_schemas::analysis::icl::schema(),
            &[(META_FINGERPRINT, fingerprint)],
        )
        .map(GapsFile)
    }

    /// Appends gaps (`request_id`, `gap_ns`).
    pub(crate) fn write(&mut self, gaps: impl IntoIterator<Item = (u64, i64)>) -> Result<()> {
        use arrow_array::builder::{Int64Builder, UInt64Builder};
        let mut id = UInt64Builder::new();
        let mut gap = Int64Builder::new();
        for (rid, g) in gaps {
            id.append_value(rid);
            gap.append_value(g);
        }
        let batch = arrow_array::RecordBatch::try_new(
            recap_schemas::analysis::icl::schema(),
            vec![Arc::new(id.finish()), Arc::new(gap.finish())],
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        self.0.write(&batch)
    }

    /// Finishes the file.
    pub(crate) fn finish(self) -> Result<()> {
        self.0.finish()
    }
}

/// The `icl_ms` distribution of the gaps in `icl.parquet` of the requests `counted` accepts
/// (the measure-phase successful ones), exact, in a few passes over the file
/// ([`recap_stats::Quantiles`]): memory holds histograms, not the gaps.
pub(crate) fn icl_distribution(path: &Path, counted: &dyn Fn(u64) -> bool) -> Result<Distribution> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, UInt64Type};
    let mut q = recap_stats::Quantiles::default();
    loop {
        crate::load::each_batch(path, &["request_id", "gap_ns"], &mut |b| {
            let (Some(id), Some(gap)) = (
                b.column_by_name("request_id")
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
                b.column_by_name("gap_ns")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            ) else {
                return Err(Error::Input(format!("{}: not an icl.parquet", path.display())));
            };
            for (rid, g) in id.values().iter().zip(gap.values()) {
                if counted(*rid) {
                    q.offer(*g);
                }
            }
            Ok(())
        })?;
        if q.end_pass() {
            return Ok(q.distribution(1e6));
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
    fn an_unwritable_cache_is_a_warning() {
        // Must not panic or fail: the policy only logs.
        cache_written("test", Path::new("/nonexistent/x"), Err(Error::Internal("boom".into())));
    }
}
