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
/// Parquet metadata of `icl.parquet` holding its `icl_ms` distribution as JSON.
const META_ICL_MS: &str = "recap.icl_ms";
/// Bumped whenever the caches' columns or meaning change, so older files are rebuilt.
const FORMAT: &str = "recap-records-3";

/// A text's key in the caches: 128-bit XXH3, so that two different texts of a run (or of the
/// hundreds of runs one cache folder may see) practically never share a key (a 64-bit key
/// reaches even odds of one collision around 5 billion texts; 128 bits never will).
pub type TextKey = u128;

/// XXH3-128 of `text`: a stable key for identical texts (and for the token-count cache).
pub fn text_hash(text: &str) -> TextKey {
    twox_hash::XxHash3_128::oneshot(text.as_bytes())
}

/// The key of `text` derived from a source named by `seed` (another key), e.g. a chat prompt
/// rendered by one template: XXH3-128 of the seed's 16 bytes followed by the text.
pub fn text_hash_from(seed: TextKey, text: &str) -> TextKey {
    let mut h = twox_hash::XxHash3_128::new();
    h.write(&seed.to_le_bytes());
    h.write(text.as_bytes());
    h.finish_128()
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

/// Writes one batch as a zstd Parquet file (analysis outputs are small and written once), with
/// `metadata` as key-value pairs. Written beside its final name and renamed, so a reader never
/// sees half a file.
pub(crate) fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch, metadata: &[(&str, &str)]) -> Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    let enc = |e: parquet::errors::ParquetError| Error::Internal(format!("writing {}: {e}", path.display()));
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
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(enc)?;
    w.write(batch).map_err(enc)?;
    w.close().map_err(enc)?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
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

/// The `icl_ms` distribution kept in `icl.parquet` if that file was built from the segments
/// `fingerprint` names (so a re-analysis computes no gaps).
pub fn cached_icl_ms(path: &Path, fingerprint: &str) -> Option<Distribution> {
    let md = footer(path).ok()?;
    let tag = |key| footer_value(md.file_metadata(), key);
    if tag(META_FINGERPRINT) != Some(fingerprint) {
        return None;
    }
    serde_json::from_str(tag(META_ICL_MS)?).ok()
}

/// `icl.parquet`: every inter-chunk gap (`request_id`, `gap_ns`), for plots of the ICL
/// distribution (the per-request table only has one row per request), tagged with the
/// segments' fingerprint and the `icl_ms` distribution.
pub fn write_gaps(
    path: &Path,
    request_ids: &[u64],
    icl: &[Vec<i64>],
    fingerprint: &str,
    icl_ms: &recap_schemas::summary::Distribution,
) -> Result<()> {
    use arrow_array::builder::{Int64Builder, UInt64Builder};
    let mut id = UInt64Builder::new();
    let mut gap = Int64Builder::new();
    for (rid, gaps) in request_ids.iter().zip(icl) {
        for g in gaps {
            id.append_value(*rid);
            gap.append_value(*g);
        }
    }
    let schema = recap_schemas::analysis::icl::schema();
    let batch = arrow_array::RecordBatch::try_new(schema, vec![Arc::new(id.finish()), Arc::new(gap.finish())])
        .map_err(|e| Error::Internal(e.to_string()))?;
    let dist = serde_json::to_string(icl_ms).map_err(|e| Error::Internal(e.to_string()))?;
    write_parquet(path, &batch, &[(META_FINGERPRINT, fingerprint), (META_ICL_MS, &dist)])
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
