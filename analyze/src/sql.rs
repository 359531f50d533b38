//! `analyze sql`: ad-hoc SQL over `requests`, `events`, `scrapes`, `metrics` and
//! `server_metrics` (the last two from `analyze report`) of one or many runs.
//!
//! With one run the tables are that run's. With several, each table is the union of the runs'
//! tables with a leading `run` column (the folder name). `metrics` is the run's most recently
//! written analysis (or the one named by `--tokenizer-id`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;

use crate::store::RunFolder;
use crate::{Error, Result};

/// The `metrics.parquet` to expose for a run: the named analysis, else the newest.
pub fn metrics_file(run: &Path, tokenizer_id: Option<&str>) -> Option<PathBuf> {
    recap_schemas::analysis::find_analysis(run, tokenizer_id).map(|d| d.join(recap_schemas::analysis::METRICS_FILE))
}

/// A session with the runs' tables registered.
pub async fn session(runs: &[RunFolder], tokenizer_id: Option<&str>) -> Result<SessionContext> {
    let mut ctx = SessionContext::new();
    // `json_get`, `json_get_str`, `->`, `->>` ... over `events.raw` and the other JSON columns.
    datafusion_functions_json::register_all(&mut ctx)?;
    for (i, run) in runs.iter().enumerate() {
        run.register(&ctx, &format!("r{i}_"))?;
        if let Some(m) = metrics_file(&run.dir, tokenizer_id) {
            register_file(&ctx, &format!("r{i}_metrics"), &m, crate::metrics::schema())?;
        }
        let server = recap_schemas::analysis::analysis_root(&run.dir).join(recap_schemas::server::SERVER_METRICS_FILE);
        if server.is_file() {
            register_file(
                &ctx,
                &format!("r{i}_server_metrics"),
                &server,
                recap_schemas::server::schema(),
            )?;
        }
    }
    for table in ["requests", "events", "scrapes", "metrics", "server_metrics"] {
        let parts: Vec<String> = runs
            .iter()
            .enumerate()
            .filter(|(i, _)| ctx.table_exist(format!("r{i}_{table}")).unwrap_or(false))
            .map(|(i, r)| {
                if runs.len() == 1 {
                    format!("SELECT * FROM r{i}_{table}")
                } else {
                    format!("SELECT '{}' AS run, * FROM r{i}_{table}", r.name().replace('\'', "''"))
                }
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        ctx.sql(&format!("CREATE VIEW {table} AS {}", parts.join(" UNION ALL ")))
            .await?;
    }
    Ok(ctx)
}

/// Registers one Parquet file that analyze wrote as table `name`.
fn register_file(ctx: &SessionContext, name: &str, path: &Path, schema: arrow_schema::SchemaRef) -> Result<()> {
    let abs = std::path::absolute(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let url = ListingTableUrl::parse(abs.to_string_lossy())?;
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let cfg = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(cfg)?))?;
    Ok(())
}

/// How `analyze sql` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
}

/// Runs `query` and returns its result in `format`.
pub async fn run_query(ctx: &SessionContext, query: &str, format: Format) -> Result<String> {
    let batches = ctx.sql(query).await?.collect().await?;
    let enc = |e: datafusion::arrow::error::ArrowError| Error::Internal(format!("formatting the result: {e}"));
    match format {
        Format::Table => datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .map(|t| t.to_string())
            .map_err(enc),
        Format::Csv => Ok(crate::store::parquet::csv(&batches)?.trim_end().to_string()),
        Format::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(Vec::new());
            for b in &batches {
                w.write(b).map_err(enc)?;
            }
            w.finish().map_err(enc)?;
            let text = String::from_utf8_lossy(&w.into_inner()).into_owned();
            Ok(if text.is_empty() { "[]".into() } else { text })
        }
    }
}
