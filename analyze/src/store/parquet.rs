//! Parquet files as analyze reads and writes them: whole files written beside their name
//! and renamed when finished, footers and their key-value tags, row groups read one at a time
//! (the unit analyze decodes in parallel), and CSV.
//!
//! Every other storage module goes through here; nothing here knows what a run or a cache is.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use crate::{Error, Result};

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

/// A failed write: the OS error when there is one (a full disk is not a bug), naming `path`.
fn encode(path: &Path, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => Error::Io {
                path: path.to_path_buf(),
                source: *io,
            },
            Err(other) => Error::Parquet {
                path: path.to_path_buf(),
                source: parquet::errors::ParquetError::External(other),
            },
        },
        e => Error::Parquet {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Writes one batch as a zstd Parquet file ([`ParquetFile`]), with `metadata` as key-value
/// pairs.
pub(crate) fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch, metadata: &[(&str, &str)]) -> Result<()> {
    let mut f = ParquetFile::create(path, batch.schema(), metadata)?;
    f.write(batch)?;
    f.finish()
}

/// `batches` as CSV text with a header line (arrow-csv: quoting and number formats as every
/// other CSV Recap writes).
pub fn csv(batches: &[arrow_array::RecordBatch]) -> Result<String> {
    let mut out = Vec::new();
    {
        let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(&mut out);
        for b in batches {
            w.write(b)?;
        }
    }
    String::from_utf8(out).map_err(|e| Error::Internal(format!("CSV is not UTF-8: {e}")))
}

/// The footer (metadata) of the Parquet file at `path`, or why it cannot be read.
pub(crate) fn footer(path: &Path) -> std::result::Result<std::sync::Arc<ParquetMetaData>, String> {
    if super::object::is_remote(path) {
        return super::object::footer(path);
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())
}

/// The value of key-value metadata `key` in a Parquet footer, if any.
pub(crate) fn footer_value<'a>(md: &'a FileMetaData, key: &str) -> Option<&'a str> {
    md.key_value_metadata()?
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_deref())
}

/// One row group of one segment: the unit analyze reads, several at a time, in write order.
#[derive(Debug, Clone)]
pub struct Part {
    /// The segment.
    pub path: PathBuf,
    /// The row group within it.
    pub row_group: usize,
    /// Its rows (from the footer).
    pub rows: u64,
    /// Added to its times ([`recap_schemas::CLOCK_COLUMNS`]) as it is read: a shard's move onto
    /// its merged run's timeline (0 otherwise).
    pub shift_ns: i64,
}

/// The row groups of `files`, in order.
pub fn parts(files: &[PathBuf]) -> Result<Vec<Part>> {
    let mut out = Vec::new();
    for f in files {
        let md = footer(f).map_err(|e| Error::Input(format!("{}: {e}", f.display())))?;
        out.extend(md.row_groups().iter().enumerate().map(|(row_group, g)| Part {
            path: f.clone(),
            row_group,
            rows: u64::try_from(g.num_rows()).unwrap_or(0),
            shift_ns: 0,
        }));
    }
    Ok(out)
}

/// The rows of `part`, only `columns` (all when empty; those the segment has: an older
/// segment lacks newer ones, which readers take as all null). A row group that cannot be decoded is an error
/// naming the segment.
pub fn read_part(part: &Part, columns: &[&str]) -> Result<Vec<arrow_array::RecordBatch>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let bad = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{} (row group {}): {e}", part.path.display(), part.row_group))
    };
    let shifted = |batches: Vec<arrow_array::RecordBatch>| {
        batches
            .into_iter()
            .map(|b| {
                if part.shift_ns == 0 {
                    Ok(b)
                } else {
                    shift_times(b, part.shift_ns).map_err(|e| bad(&e))
                }
            })
            .collect::<Result<Vec<_>>>()
    };
    if super::object::is_remote(&part.path) {
        return shifted(super::object::read_row_group(&part.path, part.row_group, columns)?);
    }
    let file = std::fs::File::open(&part.path).map_err(|source| Error::Io {
        path: part.path.clone(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let mask = if columns.is_empty() {
        ProjectionMask::all()
    } else {
        ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied())
    };
    let reader = builder
        .with_projection(mask)
        .with_row_groups(vec![part.row_group])
        .with_batch_size(16 * 1024)
        .build()
        .map_err(|e| bad(&e))?;
    shifted(reader.map(|b| b.map_err(|e| bad(&e))).collect::<Result<Vec<_>>>()?)
}

/// `batch` with `shift_ns` added to its clock columns.
fn shift_times(
    batch: arrow_array::RecordBatch,
    shift_ns: i64,
) -> std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let schema = batch.schema();
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match c.as_primitive_opt::<Int64Type>() {
            Some(times) if recap_schemas::CLOCK_COLUMNS.contains(&f.name().as_str()) => {
                std::sync::Arc::new(times.unary::<_, Int64Type>(|t| t.saturating_add(shift_ns)))
                    as arrow_array::ArrayRef
            }
            _ => c.clone(),
        })
        .collect();
    arrow_array::RecordBatch::try_new(schema, columns)
}

/// Every batch of the Parquet file at `path`, row group by row group, only `columns` (all when
/// empty): how analyze reads back the files it wrote.
pub fn each_batch(
    path: &Path,
    columns: &[&str],
    each: &mut dyn FnMut(arrow_array::RecordBatch) -> Result<()>,
) -> Result<()> {
    for part in parts(&[path.to_path_buf()])? {
        for b in read_part(&part, columns)? {
            each(b)?;
        }
    }
    Ok(())
}
