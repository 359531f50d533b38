//! `recap-tests`: Recap's end-to-end tests and the simulated endpoint they run against.
//!
//! - [`sim`]: the OpenAI-compatible simulator behind the `recap-sim` binary, with the
//!   deterministic text and fault functions tests use to recompute what a request received.
//! - [`harness`]: start `recap-sim` as a child process and find the workspace's binaries.
//! - [`runs`]: read a run folder back through the Parquet reader.

pub mod harness;
pub mod runs;
pub mod sim;
