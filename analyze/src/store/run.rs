//! Opening run folders and exposing their segments to DataFusion.
//!
//! A run may be complete, interrupted, still running or killed: only closed `*.parquet`
//! segments are read (never `.partial`). Every segment's footer is checked first: one of a
//! newer schema version stops with a clear error, a truncated or corrupt one is skipped with a
//! warning naming it, so the rest of the run is still analyzed.
//!
//! A sharded capture (`capture --shard I/N`: no manifest at the top, one run folder per shard
//! under `shards/`) opens as one run: the union of the shards' segments, each shard's times
//! moved onto shard 0's timeline by its clock anchor and measured offset (`docs/metrics.md`,
//! "Sharded runs").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use recap_schemas::manifest::Counts;
use recap_schemas::summary::{ShardSummary, ShardsSummary};
use recap_schemas::{Manifest, RunStatus, META_SCHEMA_VERSION, SCHEMA_VERSION};

use crate::{Error, Result};

/// An opened run folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// Where analyze writes for this run (its `analysis/`): the folder itself, or for a run in
    /// object storage a local folder named after its URL ([`super::object::local_dir`]).
    pub dir: PathBuf,
    /// Where the run is read from: the folder, or its URL (`s3://bucket/runs/a`).
    pub location: PathBuf,
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
    /// A sharded capture's shards, by index (empty for a run of one process).
    pub shards: Vec<ShardFolder>,
    /// Shards the capture was launched with (0 for a run of one process).
    pub shard_count: u32,
}

/// Offset uncertainty past which a merge is flagged: a timeline known only this loosely
/// blurs per-second series and the measure window's edges.
pub const SHARD_UNCERTAINTY_BOUND_NS: i64 = 5_000_000;
/// Start spread past which a merge is flagged: the shards did not start together.
pub const SHARD_START_SPREAD_BOUND_NS: i64 = 1_000_000_000;

/// One shard of a sharded run.
#[derive(Debug, Clone)]
pub struct ShardFolder {
    /// Its index.
    pub index: u32,
    /// Its folder (`<run>/shards/<index>`).
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Added to its times to put them on the merged timeline (ns).
    pub shift_ns: i64,
}

impl RunFolder {
    /// Opens `dir`: reads the manifest, checks versions, lists readable segments. A folder
    /// holding a sharded capture's `shards/` opens as one run.
    pub fn open(dir: &Path) -> Result<Self> {
        let mpath = dir.join(recap_schemas::MANIFEST_FILE);
        let Some(text) = read_text(&mpath)? else {
            if sub_dirs(dir)?
                .iter()
                .any(|d| d.file_name() == Some(recap_schemas::SHARDS_DIR.as_ref()))
            {
                return Self::open_sharded(dir);
            }
            // The user named a folder that is not a run: their input, not a runtime failure.
            return Err(Error::Input(format!(
                "{}: not a run folder (no {})",
                dir.display(),
                recap_schemas::MANIFEST_FILE
            )));
        };
        Self::with_manifest(dir, &text)
    }

    /// Opens the run folder `dir` whose manifest reads `text`.
    fn with_manifest(dir: &Path, text: &str) -> Result<Self> {
        let mpath = dir.join(recap_schemas::MANIFEST_FILE);
        let version: Option<u64> = serde_json::from_str::<serde_json::Value>(text)
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
        let manifest: Manifest = serde_json::from_str(text)
            .map_err(|e| Error::Input(format!("{}: not a Recap manifest: {e}", mpath.display())))?;
        let mut skipped = Vec::new();
        let requests = segments(&dir.join(recap_schemas::REQUESTS_DIR), &mut skipped)?;
        let events = segments(&dir.join(recap_schemas::EVENTS_DIR), &mut skipped)?;
        let scrapes = segments(&dir.join(recap_schemas::SCRAPES_DIR), &mut skipped)?;
        for (p, why) in &skipped {
            tracing::warn!("skipping unreadable segment {}: {why}", p.display());
        }
        Ok(RunFolder {
            dir: output_dir(dir)?,
            location: dir.to_path_buf(),
            manifest,
            requests,
            events,
            scrapes,
            skipped,
            shards: Vec::new(),
            shard_count: 0,
        })
    }

    /// Opens the shards under `dir/shards` as one run (see the module's doc).
    fn open_sharded(dir: &Path) -> Result<Self> {
        let root = dir.join(recap_schemas::SHARDS_DIR);
        let mut found: Vec<(u32, RunFolder)> = Vec::new();
        for path in sub_dirs(&root)? {
            let Some(index) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(text) = read_text(&path.join(recap_schemas::MANIFEST_FILE))? else {
                // Killed before its manifest: nothing of it can be placed on the timeline.
                tracing::warn!("{}: no manifest, left out of the merged run", path.display());
                continue;
            };
            found.push((index, RunFolder::with_manifest(&path, &text)?));
        }
        found.sort_by_key(|(i, _)| *i);
        let Some((_, first)) = found.first() else {
            return Err(Error::Input(format!(
                "{}: no shard run folders (shards/0, shards/1, ...) with a manifest",
                root.display()
            )));
        };
        let info_of = |r: &RunFolder| {
            r.manifest.shard.clone().ok_or_else(|| {
                Error::Input(format!(
                    "{}: no `shard` in its manifest: not a shard of a sharded capture",
                    r.location.join(recap_schemas::MANIFEST_FILE).display()
                ))
            })
        };
        let count = info_of(first)?.count;
        for (i, r) in &found {
            let info = info_of(r)?;
            if info.index != *i || info.count != count {
                return Err(Error::Input(format!(
                    "{}: says shard {}/{}, but it is in folder shards/{i} of a capture of {count} shards",
                    r.location.join(recap_schemas::MANIFEST_FILE).display(),
                    info.index,
                    info.count
                )));
            }
        }
        // Every shard's anchor on shard 0's clock; the lowest shard found is the origin.
        let corrected = |r: &RunFolder| {
            let offset = r.manifest.shard.as_ref().and_then(|s| s.clock_offset_ns).unwrap_or(0);
            r.manifest.clock_anchor_unix_ns.saturating_add(offset)
        };
        let origin = corrected(first);
        let mut manifest = merged_manifest(found.iter().map(|(_, r)| &r.manifest));
        manifest.clock_anchor_unix_ns = origin;
        let mut run = RunFolder {
            dir: output_dir(dir)?,
            location: dir.to_path_buf(),
            manifest,
            requests: Vec::new(),
            events: Vec::new(),
            scrapes: Vec::new(),
            skipped: Vec::new(),
            shards: Vec::new(),
            shard_count: count,
        };
        for (index, r) in found {
            let shift_ns = corrected(&r).saturating_sub(origin);
            run.requests.extend(r.requests);
            run.events.extend(r.events);
            // Every shard may scrape the same server: one shard's scrapes describe it.
            if run.scrapes.is_empty() {
                run.scrapes = r.scrapes;
            }
            run.skipped.extend(r.skipped);
            run.shards.push(ShardFolder {
                index,
                shift_ns,
                dir: r.location,
                manifest: r.manifest,
            });
        }
        Ok(run)
    }

    /// The row groups of `files` (some of this run's segments), each with the shift that puts
    /// its times on the run's timeline.
    pub fn parts(&self, files: &[PathBuf]) -> Result<Vec<super::parquet::Part>> {
        let mut parts = super::parquet::parts(files)?;
        for p in &mut parts {
            p.shift_ns = self.shift_of(&p.path);
        }
        Ok(parts)
    }

    /// The shift of a segment's times: its shard's, 0 outside a sharded run.
    fn shift_of(&self, segment: &Path) -> i64 {
        self.shards
            .iter()
            .find(|s| segment.starts_with(&s.dir))
            .map_or(0, |s| s.shift_ns)
    }

    /// What `summary.json` says about the shards, with the warnings a merge deserves; `None`
    /// for a run of one process.
    pub fn shards_summary(&self) -> Option<ShardsSummary> {
        if self.shards.is_empty() {
            return None;
        }
        let mut warnings = Vec::new();
        let missing: Vec<String> = (0..self.shard_count)
            .filter(|i| !self.shards.iter().any(|s| s.index == *i))
            .map(|i| i.to_string())
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "shard{} {} of {} missing: this is not the whole run's load",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                self.shard_count
            ));
        }
        let ms = |ns: i64| ns as f64 / 1e6;
        let mut shards = Vec::new();
        for s in &self.shards {
            let info = s.manifest.shard.as_ref();
            let offset = info.and_then(|i| i.clock_offset_ns);
            let uncertainty = info.and_then(|i| i.clock_offset_uncertainty_ns);
            match (s.index, offset, uncertainty) {
                (0, _, _) => {}
                (_, None, _) | (_, _, None) => warnings.push(format!(
                    "shard {}: clock offset not measured (started by {}): its times trust the hosts' clocks",
                    s.index,
                    info.map_or("nothing", |i| i.start.as_str())
                )),
                (_, Some(_), Some(u)) if u > SHARD_UNCERTAINTY_BOUND_NS => warnings.push(format!(
                    "shard {}: clock offset known only within ±{:.1} ms (bound {:.0} ms)",
                    s.index,
                    ms(u),
                    ms(SHARD_UNCERTAINTY_BOUND_NS)
                )),
                _ => {}
            }
            if s.shift_ns.abs() > SHARD_START_SPREAD_BOUND_NS {
                warnings.push(format!(
                    "shard {} started {:.1} s from shard {}: the shards did not run together",
                    s.index,
                    ms(s.shift_ns) / 1e3,
                    self.shards[0].index
                ));
            }
            if s.manifest.status != RunStatus::Complete {
                warnings.push(format!("shard {} ended {}", s.index, s.manifest.status));
            }
            let counts = s.manifest.counts.clone().unwrap_or_default();
            shards.push(ShardSummary {
                index: s.index,
                run_id: s.manifest.run_id.clone(),
                status: s.manifest.status.to_string(),
                requests: counts.requests,
                done: counts.done,
                errors: counts.errors.values().sum(),
                clock_offset_ms: offset.map(ms),
                clock_offset_uncertainty_ms: uncertainty.map(ms),
                shift_ms: ms(s.shift_ns),
            });
        }
        Some(ShardsSummary {
            count: self.shard_count,
            shards,
            warnings,
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
    /// A sharded run's tables are the union of its shards' with their times shifted.
    pub fn register(&self, ctx: &SessionContext, prefix: &str) -> Result<()> {
        if super::object::is_remote(&self.location) {
            super::object::register(ctx, &self.location)?;
        }
        for (name, files, schema) in [
            ("requests", &self.requests, recap_schemas::requests::schema()),
            ("events", &self.events, recap_schemas::events::schema()),
            ("scrapes", &self.scrapes, recap_schemas::scrapes::schema()),
        ] {
            let name = format!("{prefix}{name}");
            if self.shards.is_empty() {
                ctx.register_table(&name, table_of(files, schema)?)?;
                continue;
            }
            let mut union: Option<datafusion::dataframe::DataFrame> = None;
            for s in &self.shards {
                let own: Vec<PathBuf> = files.iter().filter(|f| f.starts_with(&s.dir)).cloned().collect();
                if own.is_empty() {
                    continue;
                }
                let mut df = ctx.read_table(table_of(&own, schema.clone())?)?;
                for c in recap_schemas::CLOCK_COLUMNS {
                    if schema.column_with_name(c).is_some() && s.shift_ns != 0 {
                        use datafusion::prelude::{col, lit};
                        df = df.with_column(c, col(c) + lit(s.shift_ns))?;
                    }
                }
                union = Some(match union {
                    None => df,
                    Some(u) => u.union(df)?,
                });
            }
            match union {
                Some(u) => ctx.register_table(&name, u.into_view())?,
                None => ctx.register_table(&name, table_of(&[], schema)?)?,
            };
        }
        Ok(())
    }
}

/// The manifest of a merged run: the first shard's, with the load and counts of all of them
/// (each shard records its share) and the worst status.
fn merged_manifest<'a>(all: impl Iterator<Item = &'a Manifest>) -> Manifest {
    let all: Vec<&Manifest> = all.collect();
    let mut m = all[0].clone();
    m.load.concurrency = all.iter().map(|m| m.load.concurrency).sum::<Option<u32>>();
    m.load.max_in_flight = all.iter().map(|m| m.load.max_in_flight).sum();
    m.load.rate_per_s = all.iter().map(|m| m.load.rate_per_s).sum::<Option<f64>>();
    m.load.requests = all.iter().map(|m| m.load.requests).sum::<Option<u64>>();
    m.load.warmup_requests = all.iter().map(|m| m.load.warmup_requests).sum();
    m.status = all
        .iter()
        .map(|m| m.status)
        .max_by_key(|s| status_rank(*s))
        .unwrap_or(m.status);
    m.status_message = all
        .iter()
        .filter_map(|x| {
            Some(format!(
                "shard {}: {}",
                x.shard.as_ref()?.index,
                x.status_message.as_deref()?
            ))
        })
        .reduce(|a, b| format!("{a}; {b}"));
    m.counts = all
        .iter()
        .map(|m| m.counts.clone())
        .collect::<Option<Vec<Counts>>>()
        .map(|c| {
            c.iter().fold(Counts::default(), |mut sum, one| {
                sum.add(one);
                sum
            })
        });
    m.ended_at = all.iter().filter_map(|m| m.ended_at.clone()).max();
    // Each shard's own health is checked shard by shard (report).
    m.client = None;
    m.shard = None;
    m
}

/// How bad a status is, for the merged run's (the worst shard's).
fn status_rank(s: RunStatus) -> u8 {
    match s {
        RunStatus::Complete => 0,
        RunStatus::Stopped => 1,
        RunStatus::Running => 2,
        RunStatus::Interrupted => 3,
        RunStatus::Failed => 4,
    }
}

/// The text of the file at `path` (local or in object storage); `None` when there is none.
fn read_text(path: &Path) -> Result<Option<String>> {
    if super::object::is_remote(path) {
        return Ok(super::object::read(path)?.map(|b| String::from_utf8_lossy(b.as_ref()).into_owned()));
    }
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::unreadable(path, source)),
    }
}

/// The folders directly in `dir` (none when it does not exist).
fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if super::object::is_remote(dir) {
        return Ok(super::object::list(dir)?.0);
    }
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect()),
        Err(_) => Ok(Vec::new()),
    }
}

/// Where analyze writes for the run at `location`.
fn output_dir(location: &Path) -> Result<PathBuf> {
    if super::object::is_remote(location) {
        super::object::local_dir(location)
    } else {
        Ok(location.to_path_buf())
    }
}

/// Closed segments of one table folder, footers checked, in write order.
fn segments(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>> {
    let listed = if super::object::is_remote(dir) {
        Ok(super::object::list(dir)?.1)
    } else {
        std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>())
    };
    let mut files: Vec<PathBuf> = match listed {
        Ok(all) => all
            .into_iter()
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

/// `files` as one table (an empty one when there are none).
fn table_of(
    files: &[PathBuf],
    schema: arrow_schema::SchemaRef,
) -> Result<Arc<dyn datafusion::datasource::TableProvider>> {
    if files.is_empty() {
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
        return Ok(Arc::new(empty));
    }
    let urls = files
        .iter()
        .map(|f| {
            if super::object::is_remote(f) {
                return ListingTableUrl::parse(f.to_string_lossy()).map_err(Error::from);
            }
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
    Ok(Arc::new(ListingTable::try_new(cfg)?))
}
