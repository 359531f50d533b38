//! `<run>/analysis/<tokenizer-id>/tokens.parquet`: one tokenizer's counts by text key, so a
//! re-analysis with that tokenizer counts nothing it has counted before.
//!
//! The file is only an accelerator: a missing, unreadable or older-format file reads as empty.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use recap_schemas::analysis::tokens as columns;

use super::parquet::{footer_value, write_parquet};
use crate::columns::{keys_col, u32_col};
use crate::keys::{key_bytes, key_from_bytes, TextKey};
use crate::{Error, Result};

/// Footer key: the engine that counted ([`crate::tokenize::Counter::engine_label`]).
const META_TOKENIZER_ENGINE: &str = "recap.tokenizer_engine";

/// Counts by `(text key, add_special_tokens)`.
pub type Counts = HashMap<(TextKey, bool), u32>;

/// Reads `path`: its counts and the engine that made them; empty when it cannot be used.
pub fn read(path: &Path) -> (Counts, Option<String>) {
    use arrow_array::cast::AsArray;
    let mut counts = HashMap::new();
    let Ok(file) = std::fs::File::open(path) else {
        return (counts, None);
    };
    let Ok(builder) = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file) else {
        return (counts, None);
    };
    let engine = footer_value(builder.metadata().file_metadata(), META_TOKENIZER_ENGINE).map(str::to_string);
    let Ok(reader) = builder.build() else {
        tracing::warn!("ignoring unreadable token cache {}", path.display());
        return (HashMap::new(), None);
    };
    for b in reader.flatten() {
        let (Some(h), Some(s), Some(n)) = (
            keys_col(&b, columns::TEXT_HASH),
            b.column_by_name(columns::ADD_SPECIAL_TOKENS)
                .and_then(|c| c.as_boolean_opt()),
            u32_col(&b, columns::TOKENS),
        ) else {
            tracing::info!("ignoring the token cache {} of an older format", path.display());
            return (HashMap::new(), None);
        };
        for i in 0..b.num_rows() {
            if let Some(key) = key_from_bytes(h.value(i)) {
                counts.insert((key, s.value(i)), n.value(i));
            }
        }
    }
    (counts, engine)
}

/// Writes `counts` to `path`, tagged with the `engine` that made them.
pub fn write(path: &Path, counts: &Counts, engine: Option<&str>) -> Result<()> {
    use arrow_array::builder::{BooleanBuilder, FixedSizeBinaryBuilder, UInt32Builder};
    let (mut h, mut s, mut n) = (
        FixedSizeBinaryBuilder::new(16),
        BooleanBuilder::new(),
        UInt32Builder::new(),
    );
    for ((hash, special), count) in counts {
        h.append_value(key_bytes(*hash)).map_err(Error::from)?;
        s.append_value(*special);
        n.append_value(*count);
    }
    let batch = arrow_array::RecordBatch::try_new(
        columns::schema(),
        vec![Arc::new(h.finish()), Arc::new(s.finish()), Arc::new(n.finish())],
    )
    .map_err(Error::from)?;
    let meta: Vec<(&str, &str)> = engine.map(|e| (META_TOKENIZER_ENGINE, e)).into_iter().collect();
    write_parquet(path, &batch, &meta)
}
