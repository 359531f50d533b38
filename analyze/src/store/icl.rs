//! `icl.parquet`: every inter-chunk gap of a run, for the ICL distribution and its plots.
//!
//! The per-request table has one row per request; the gaps are many per request, so they get
//! their own file, written as requests finish and read back in a few streaming passes.

use std::path::Path;
use std::sync::Arc;

use recap_schemas::analysis::icl as columns;
use recap_schemas::summary::Distribution;

use super::parquet::{each_batch, ParquetFile};
use crate::columns::{i64_col, u64_col};
use crate::{Error, Result};

/// `icl.parquet`, written as requests finish: every inter-chunk gap (`request_id`, `gap_ns`)
/// for plots of the ICL distribution (the per-request table has one row per request), tagged
/// with the segments' fingerprint so a re-analysis reads it instead of the events.
pub struct GapsFile(ParquetFile);

impl GapsFile {
    /// Starts `path`.
    pub fn create(path: &Path, fingerprint: &str) -> Result<Self> {
        ParquetFile::create(path, columns::schema(), &[(super::META_FINGERPRINT, fingerprint)]).map(GapsFile)
    }

    /// Appends gaps (`request_id`, `gap_ns`).
    pub fn write(&mut self, gaps: impl IntoIterator<Item = (u64, i64)>) -> Result<()> {
        use arrow_array::builder::{Int64Builder, UInt64Builder};
        let mut id = UInt64Builder::new();
        let mut gap = Int64Builder::new();
        for (rid, g) in gaps {
            id.append_value(rid);
            gap.append_value(g);
        }
        let batch =
            arrow_array::RecordBatch::try_new(columns::schema(), vec![Arc::new(id.finish()), Arc::new(gap.finish())])
                .map_err(Error::from)?;
        self.0.write(&batch)
    }

    /// Finishes the file.
    pub fn finish(self) -> Result<()> {
        self.0.finish()
    }
}

/// The `icl_ms` distribution of the gaps in `icl.parquet` of the requests `counted` accepts
/// (the measure-phase successful ones), exact, in a few passes over the file
/// ([`recap_stats::Quantiles`]): memory holds histograms, not the gaps.
pub fn distribution(path: &Path, counted: &dyn Fn(u64) -> bool) -> Result<Distribution> {
    let mut q = recap_stats::Quantiles::default();
    loop {
        each_batch(path, &[columns::REQUEST_ID, columns::GAP_NS], &mut |b| {
            let (Some(id), Some(gap)) = (u64_col(&b, columns::REQUEST_ID), i64_col(&b, columns::GAP_NS)) else {
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
