//! Load: staged raw records → typed rows in PostgreSQL.

pub mod coerce;
pub mod ddl;
