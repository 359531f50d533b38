//! Opening run folders and exposing their segments to DataFusion.
//!
//! A run may be complete, interrupted, still running or killed: only closed `*.parquet`
//! segments are read (never `.partial`). Every segment's footer is checked first: one of a
//! newer schema version stops with a clear error, a truncated or corrupt one is skipped with a
//! warning naming it, so the rest of the run is still analyzed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use recap_schemas::{Manifest, META_SCHEMA_VERSION, SCHEMA_VERSION};

use crate::{Error, Result};

/// An opened run folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Readable `requests` segments.
    pub requests: Vec<PathBuf>,
    /// Readable `events` segments.
    pub events: Vec<PathBuf>,
    /// Readable `scrapes` segments (`capture --scrape`; none otherwise).
    pub scrapes: Vec<PathBuf>,
    /// Segments skipped as unreadable, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl RunFolder {
    /// Opens `dir`: reads the manifest, checks versions, lists readable segments.
    pub fn open(dir: &Path) -> Result<Self> {
        let mpath = dir.join(recap_schemas::MANIFEST_FILE);
        let text = std::fs::read_to_string(&mpath).map_err(|source| match source.kind() {
            // The user named a folder that is not a run: their input, not a runtime failure.
            std::io::ErrorKind::NotFound => Error::Input(format!(
                "{}: not a run folder (no {})",
                dir.display(),
                recap_schemas::MANIFEST_FILE
            )),
            _ => Error::unreadable(&mpath, source),
        })?;
        let version: Option<u64> = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("schema_version").and_then(serde_json::Value::as_u64));
        if let Some(v) = version {
            if v > u64::from(SCHEMA_VERSION) {
                return Err(Error::Input(format!(
                    "{}: run has schema version {v}, this analyze reads up to {SCHEMA_VERSION}; upgrade Recap",
                    mpath.display()
                )));
            }
        }
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: not a Recap manifest: {e}", mpath.display())))?;
        let mut skipped = Vec::new();
        let requests = segments(&dir.join(recap_schemas::REQUESTS_DIR), &mut skipped)?;
        let events = segments(&dir.join(recap_schemas::EVENTS_DIR), &mut skipped)?;
        let scrapes = segments(&dir.join(recap_schemas::SCRAPES_DIR), &mut skipped)?;
        for (p, why) in &skipped {
            tracing::warn!("skipping unreadable segment {}: {why}", p.display());
        }
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            manifest,
            requests,
            events,
            scrapes,
            skipped,
        })
    }

    /// A short label: the folder name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    /// Registers this run's `requests`, `events` and `scrapes` as tables named
    /// `<prefix>requests`, `<prefix>events` and `<prefix>scrapes`.
    pub fn register(&self, ctx: &SessionContext, prefix: &str) -> Result<()> {
        register_files(
            ctx,
            &format!("{prefix}requests"),
            &self.requests,
            recap_schemas::requests::schema(),
        )?;
        register_files(
            ctx,
            &format!("{prefix}events"),
            &self.events,
            recap_schemas::events::schema(),
        )?;
        register_files(
            ctx,
            &format!("{prefix}scrapes"),
            &self.scrapes,
            recap_schemas::scrapes::schema(),
        )
    }
}

/// Closed segments of one table folder, footers checked, in write order.
fn segments(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    recap_schemas::sort_segments(&mut files);
    let mut ok = Vec::with_capacity(files.len());
    for f in files {
        match super::parquet::footer(&f) {
            Err(why) => skipped.push((f, why)),
            Ok(md) => {
                let version = super::parquet::footer_value(md.file_metadata(), META_SCHEMA_VERSION)
                    .and_then(|v| v.parse::<u32>().ok());
                match version {
                    Some(v) if v > SCHEMA_VERSION => {
                        return Err(Error::Input(format!(
                        "{}: segment has schema version {v}, this analyze reads up to {SCHEMA_VERSION}; upgrade Recap",
                        f.display()
                    )))
                    }
                    Some(_) => ok.push(f),
                    None => skipped.push((f, format!("no `{META_SCHEMA_VERSION}` metadata: not a Recap segment"))),
                }
            }
        }
    }
    Ok(ok)
}

fn register_files(ctx: &SessionContext, name: &str, files: &[PathBuf], schema: arrow_schema::SchemaRef) -> Result<()> {
    if files.is_empty() {
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(name, Arc::new(empty))?;
        return Ok(());
    }
    let urls = files
        .iter()
        .map(|f| {
            let abs = std::path::absolute(f).map_err(|source| Error::Io {
                path: f.clone(),
                source,
            })?;
            ListingTableUrl::parse(abs.to_string_lossy()).map_err(Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let cfg = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(opts)
        .with_schema(schema);
    let table = ListingTable::try_new(cfg)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}
