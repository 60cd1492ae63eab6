//! The integration tests: one binary, so the heavy dependencies link once.

mod support;

mod extract;
mod load;
mod spec;
