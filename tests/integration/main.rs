//! The integration tests: one binary, so the heavy dependencies link once.

// A test or bench binary exports nothing: its `pub` is for its own modules.
#![allow(unreachable_pub)]

mod support;

mod aws;
mod completeness;
mod diagram;
mod extract;
mod failearly;
mod files;
mod foreach;
mod geometry;
mod incremental;
mod init;
mod layers;
mod load;
mod nested;
mod pagination;
mod reach;
mod recording;
mod resume;
mod spec;
mod staysright;
mod trust;
mod warehouse;
mod workflow;
