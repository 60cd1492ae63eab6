//! Opening a warehouse: which one a URL names, and the one place that lists them. A new
//! warehouse is a side file implementing [`Warehouse`](super::warehouse::Warehouse) and one
//! arm here.

use super::ddl::Dialect;
use super::LoadError;
use crate::spec::location::WarehouseKind;
use crate::util::Secrets;

/// The warehouse a URL names: `sqlite://<path>` or a PostgreSQL URL / key-value string.
pub(super) enum Db {
    Postgres(super::postgres::Postgres),
    Sqlite(super::sqlite::Sqlite),
}

/// The dialect of a warehouse URL, without connecting.
pub fn dialect_of(url: &str) -> Dialect {
    match WarehouseKind::of(url) {
        WarehouseKind::Sqlite { .. } => Dialect::Sqlite,
        WarehouseKind::Postgres => Dialect::Postgres,
    }
}

/// Connect to (or open) the warehouse at `url`.
pub(super) async fn open(url: &str, secrets: &Secrets) -> Result<Db, LoadError> {
    Ok(match dialect_of(url) {
        Dialect::Sqlite => Db::Sqlite(super::sqlite::Sqlite::open(url)?),
        Dialect::Postgres => Db::Postgres(super::postgres::Postgres::connect(url, secrets).await?),
    })
}

/// Run `$body` with `$w` bound to the warehouse of `$db`, whichever it is.
macro_rules! with_warehouse {
    ($db:expr, $w:ident => $body:expr) => {
        match $db {
            $crate::load::open::Db::Postgres(mut $w) => $body,
            $crate::load::open::Db::Sqlite(mut $w) => $body,
        }
    };
}
pub(super) use with_warehouse;
