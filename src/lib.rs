//! sluice: a declarative REST API → staging → PostgreSQL pipeline runner.
//!
//! `spec` parses and validates pipeline specs; `extract` reads APIs; `stage` keeps raw
//! records in a folder or S3; `load` writes PostgreSQL; `diagram` draws a spec; `run`
//! knows the order of the steps; `cli` is the command line.
//!
//! Layers, lowest first: util < progress < value < incremental < spec < resolve < stage < extract < load < run < init < aws < diagram < cli
//!
//! A module imports only from the modules before it, and the files of one folder import
//! each other without a circle; `tests/integration/layers.rs` holds the crate to that.
//! The spec decides what kind of place its staging location and warehouse URL name
//! (`spec::location`), so the runtime and the diagram never decide it again.

pub mod aws;
pub mod cli;
pub mod diagram;
pub mod extract;
pub mod incremental;
pub mod init;
pub mod load;
pub mod progress;
pub mod resolve;
pub mod run;
pub mod spec;
pub mod stage;
pub mod util;
pub mod value;
