//! Load: staged raw records → typed rows in PostgreSQL.

pub mod coerce;
pub mod ddl;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(String),
}
