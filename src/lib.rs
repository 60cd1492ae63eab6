//! sluice: a declarative REST API → staging → PostgreSQL pipeline runner.
//!
//! `spec` parses and validates pipeline specs; `extract` reads APIs; `stage` keeps raw
//! records in a folder or S3; `replay` records API exchanges and serves them back; `load`
//! writes PostgreSQL or SQLite; `diagram` draws a spec; `run` knows the order of the steps;
//! `cli` is the command line.
//!
//! Layers, lowest first: util < progress < value < incremental < spec < resolve < stage < replay < extract < load < run < init < aws < diagram < cli
//!
//! A module imports only from the modules before it, and the files of one folder import
//! each other without a circle; `tests/integration/layers.rs` holds the crate to that.
//! The spec decides what kind of place its staging location and warehouse URL name
//! (`spec::location`), so the runtime and the diagram never decide it again.

pub(crate) mod aws;
pub mod cli;
pub mod diagram;
pub(crate) mod extract;
pub(crate) mod incremental;
pub(crate) mod init;
pub mod load;
pub(crate) mod progress;
pub(crate) mod replay;
pub(crate) mod resolve;
pub(crate) mod run;
pub mod spec;
pub mod stage;
pub(crate) mod util;
pub mod value;
