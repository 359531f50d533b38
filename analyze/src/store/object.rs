//! Run folders in object storage (`s3://`, `gs://`, `az://`), read in place through the
//! `object_store` crate DataFusion already uses: a laptop analyzes and queries a cluster's runs
//! without copying them first. Endpoints and credentials come from the environment every tool
//! built on `object_store` reads (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
//!
//! A remote segment is named by its URL held in a `PathBuf` (`s3://bucket/run/events/part-…`),
//! so a run's segment lists keep one type wherever the run lives; what reads a segment asks
//! [`is_remote`] first. What `analyze` writes for a remote run (its `analysis/`) goes to a
//! local folder named after the URL ([`local_dir`]): the bucket is only read.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::{Error, Result};

/// URL schemes read from object storage.
pub const SCHEMES: [&str; 5] = ["s3", "s3a", "gs", "az", "abfss"];

/// Environment variable naming where analyses of remote runs are written (default: the user's
/// cache folder, [`super::user_cache::root`]`/remote/<scheme>/<bucket>/<path>`).
pub const CACHE_VAR: &str = "RECAP_REMOTE_CACHE";

/// Whether `p` is an object-storage URL.
pub fn is_remote(p: &Path) -> bool {
    p.to_str()
        .and_then(|s| s.split_once("://"))
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme))
}

fn url_of(p: &Path) -> Result<url::Url> {
    let text = p
        .to_str()
        .ok_or_else(|| Error::Input(format!("{}: not UTF-8", p.display())))?;
    url::Url::parse(text.trim_end_matches('/')).map_err(|e| Error::Input(format!("{text}: not a URL: {e}")))
}

/// `scheme://bucket`: one store each.
fn bucket_of(url: &url::Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""))
}

/// The store serving `p`'s bucket (built once) and the object's path in it.
fn locate(p: &Path) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let url = url_of(p)?;
    let key = bucket_of(&url);
    let stores = STORES.get_or_init(Default::default);
    let mut map = stores
        .lock()
        .map_err(|_| Error::Internal("object store registry poisoned".into()))?;
    let store = match map.get(&key) {
        Some(s) => s.clone(),
        None => {
            let s = build(&url)?;
            map.insert(key, s.clone());
            s
        }
    };
    let path = ObjectPath::from_url_path(url.path()).map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
    Ok((store, path))
}

fn build(url: &url::Url) -> Result<Arc<dyn ObjectStore>> {
    let bad = |e: object_store::Error| Error::Input(format!("{}: {e}", bucket_of(url)));
    Ok(match url.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(bad)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(bad)?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(bad)?,
        ),
    })
}

/// Runs `f` to its end on a runtime of its own (a thread of its own when the caller is
/// already inside one, as `analyze sql` is).
fn block<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    static RT: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("recap-object-store")
            .enable_all()
            .build()
    });
    let Ok(rt) = rt.as_ref() else {
        panic!("cannot start the object store's runtime");
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
    } else {
        rt.block_on(f)
    }
}

fn failed(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("{}: {e}", p.display()))
}

/// Sizes learnt from listings (a segment's size is part of the caches' fingerprint).
fn sizes() -> &'static Mutex<HashMap<PathBuf, u64>> {
    static SIZES: OnceLock<Mutex<HashMap<PathBuf, u64>>> = OnceLock::new();
    SIZES.get_or_init(Default::default)
}

/// Footers read so far (a segment is listed, checked and then read).
fn footers() -> &'static Mutex<HashMap<PathBuf, Arc<ParquetMetaData>>> {
    static FOOTERS: OnceLock<Mutex<HashMap<PathBuf, Arc<ParquetMetaData>>>> = OnceLock::new();
    FOOTERS.get_or_init(Default::default)
}

/// The object at `p`; `Ok(None)` when there is none.
pub fn read(p: &Path) -> Result<Option<Bytes>> {
    let (store, path) = locate(p)?;
    block(async move {
        match store.get(&path).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| failed(p, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(p, e)),
        }
    })
}

/// What is directly under the folder `p`: its sub-folders and its objects, by URL.
pub fn list(p: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (store, path) = locate(p)?;
    let listed = block(async move { store.list_with_delimiter(Some(&path)).await }).map_err(|e| failed(p, e))?;
    let url = url_of(p)?;
    let base = bucket_of(&url);
    let named = |o: &ObjectPath| PathBuf::from(format!("{base}/{o}"));
    let dirs = listed.common_prefixes.iter().map(named).collect();
    let files: Vec<PathBuf> = listed.objects.iter().map(|o| named(&o.location)).collect();
    if let Ok(mut s) = sizes().lock() {
        s.extend(files.iter().cloned().zip(listed.objects.iter().map(|o| o.size)));
    }
    Ok((dirs, files))
}

/// The size of the object at `p` (0 when unknown).
pub fn size(p: &Path) -> u64 {
    if let Some(n) = sizes().lock().ok().and_then(|s| s.get(p).copied()) {
        return n;
    }
    let Ok((store, path)) = locate(p) else { return 0 };
    block(async move { store.head(&path).await.map_or(0, |m| m.size) })
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One object, read by the byte ranges Parquet's async reader asks for (what arrow-rs
/// recommends over its deprecated `ParquetObjectReader`).
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

impl ObjectReader {
    fn of(p: &Path) -> Result<ObjectReader> {
        let (store, path) = locate(p)?;
        let size = match sizes().lock().ok().and_then(|s| s.get(p).copied()) {
            Some(n) => n,
            None => {
                let (store, path) = (store.clone(), path.clone());
                block(async move { store.head(&path).await })
                    .map_err(|e| failed(p, e))?
                    .size
            }
        };
        Ok(ObjectReader { store, path, size })
    }
}

fn parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move { self.store.get_range(&self.path, range).await.map_err(parquet_error) })
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move { self.store.get_ranges(&self.path, &ranges).await.map_err(parquet_error) })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let md = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        })
    }
}

/// The Parquet footer of the object at `p`.
pub fn footer(p: &Path) -> std::result::Result<Arc<ParquetMetaData>, String> {
    if let Some(md) = footers().lock().ok().and_then(|f| f.get(p).cloned()) {
        return Ok(md);
    }
    let mut reader = ObjectReader::of(p).map_err(|e| e.to_string())?;
    let md = block(async move { reader.get_metadata(None).await }).map_err(|e| e.to_string())?;
    if let Ok(mut f) = footers().lock() {
        f.insert(p.to_path_buf(), md.clone());
    }
    Ok(md)
}

/// Row group `row_group` of the segment at `p`, only `columns` (all when empty).
pub fn read_row_group(p: &Path, row_group: usize, columns: &[&str]) -> Result<Vec<arrow_array::RecordBatch>> {
    use futures_util::StreamExt;
    let md = footer(p).map_err(|e| failed(p, e))?;
    let reader = ObjectReader::of(p)?;
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    block(async move {
        let meta = ArrowReaderMetadata::try_new(md, ArrowReaderOptions::new()).map_err(|e| failed(p, e))?;
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta);
        let mask = if columns.is_empty() {
            ProjectionMask::all()
        } else {
            ProjectionMask::columns(builder.parquet_schema(), columns.iter().map(String::as_str))
        };
        let mut stream = builder
            .with_projection(mask)
            .with_row_groups(vec![row_group])
            .with_batch_size(16 * 1024)
            .build()
            .map_err(|e| failed(p, e))?;
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b.map_err(|e| failed(p, format!("row group {row_group}: {e}")))?);
        }
        Ok(out)
    })
}

/// Lets DataFusion in `ctx` read the bucket of `p` (for `analyze sql`).
pub fn register(ctx: &datafusion::prelude::SessionContext, p: &Path) -> Result<()> {
    let (store, _) = locate(p)?;
    let url = url_of(p)?;
    let base = url::Url::parse(&bucket_of(&url)).map_err(|e| failed(p, e))?;
    ctx.register_object_store(&base, store);
    Ok(())
}

/// Where `analyze` writes what it computes for the remote run at `p`.
pub fn local_dir(p: &Path) -> Result<PathBuf> {
    let root = match std::env::var_os(CACHE_VAR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => super::user_cache::root()
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: no cache folder for its analysis: set {CACHE_VAR}",
                    p.display()
                ))
            })?
            .join("remote"),
    };
    local_dir_under(&root, p)
}

/// [`local_dir`] under `root`: `<root>/<scheme>/<bucket>/<path>`.
fn local_dir_under(root: &Path, p: &Path) -> Result<PathBuf> {
    let url = url_of(p)?;
    let mut dir = root.join(url.scheme()).join(url.host_str().unwrap_or("_"));
    for seg in url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
    {
        dir.push(seg);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_remote_runs_and_their_local_analysis_folder() {
        assert!(is_remote(Path::new("s3://bucket/runs/a")));
        assert!(is_remote(Path::new("gs://b/x")));
        assert!(!is_remote(Path::new("runs/s3/a")));
        assert!(!is_remote(Path::new("/tmp/x")));
        let d = local_dir_under(Path::new("/tmp/recap-cache"), Path::new("s3://bucket/runs/../a/")).expect("dir");
        assert_eq!(d, PathBuf::from("/tmp/recap-cache/s3/bucket/a"));
    }
}
