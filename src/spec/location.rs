//! What kind of place a spec's staging location and warehouse URL name, decided here once
//! and read alike by the compile pass, the runtime backends, the AWS bootstrap and the
//! diagram.

/// The URL scheme of a SQLite warehouse: `sqlite://path/to/file.db`.
pub(crate) const SQLITE_SCHEME: &str = "sqlite://";

/// A staging location: an S3 bucket and key prefix, or a local folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StagingLocation<'a> {
    /// `s3://bucket/prefix`.
    S3 { bucket: &'a str, prefix: &'a str },
    /// `file:///abs/path`, or a plain folder path (the `file://` taken off).
    Folder(&'a str),
}

/// Why a location is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocationError {
    /// `s3://` with nothing after it.
    NoBucket,
    /// Another scheme (`http://…`).
    Unknown,
}

impl<'a> StagingLocation<'a> {
    pub(crate) fn parse(location: &'a str) -> Result<Self, LocationError> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LocationError::NoBucket);
            }
            return Ok(StagingLocation::S3 { bucket, prefix });
        }
        if let Some(path) = location.strip_prefix("file://") {
            return Ok(StagingLocation::Folder(path));
        }
        if location.contains("://") {
            return Err(LocationError::Unknown);
        }
        Ok(StagingLocation::Folder(location))
    }

    /// The bucket and prefix of an S3 location.
    pub(crate) fn s3(self) -> Option<(&'a str, &'a str)> {
        match self {
            StagingLocation::S3 { bucket, prefix } => Some((bucket, prefix)),
            StagingLocation::Folder(_) => None,
        }
    }

    /// Whether `location` is an S3 one (even one that names no bucket yet).
    pub(crate) fn is_s3(location: &str) -> bool {
        location.starts_with("s3://")
    }
}

impl LocationError {
    /// The message for `location`, saying what is written instead.
    pub(crate) fn message(&self, location: &str) -> String {
        match self {
            LocationError::NoBucket => format!("`{location}` names no bucket; write `s3://bucket/prefix`"),
            LocationError::Unknown => {
                format!("`{location}` is neither `file://…`, a folder path nor `s3://bucket/prefix`")
            }
        }
    }
}

/// The kind of warehouse a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WarehouseKind<'a> {
    Postgres,
    /// The file and the URL's options (after `?`).
    Sqlite {
        file: &'a str,
        options: &'a str,
    },
}

impl<'a> WarehouseKind<'a> {
    /// `sqlite://<file>[?options]` or else a PostgreSQL URL / key-value string.
    pub(crate) fn of(url: &'a str) -> Self {
        match url.strip_prefix(SQLITE_SCHEME) {
            Some(rest) => {
                let (file, options) = rest.split_once('?').unwrap_or((rest, ""));
                WarehouseKind::Sqlite { file, options }
            }
            None => WarehouseKind::Postgres,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_told_apart_once() {
        assert_eq!(
            StagingLocation::parse("s3://b/p/q"),
            Ok(StagingLocation::S3 {
                bucket: "b",
                prefix: "p/q"
            })
        );
        assert_eq!(
            StagingLocation::parse("s3://b"),
            Ok(StagingLocation::S3 {
                bucket: "b",
                prefix: ""
            })
        );
        assert_eq!(StagingLocation::parse("s3://"), Err(LocationError::NoBucket));
        assert_eq!(
            StagingLocation::parse("file:///tmp/x"),
            Ok(StagingLocation::Folder("/tmp/x"))
        );
        assert_eq!(
            StagingLocation::parse(".sluice/x"),
            Ok(StagingLocation::Folder(".sluice/x"))
        );
        assert_eq!(StagingLocation::parse("http://x/y"), Err(LocationError::Unknown));
        assert_eq!(
            WarehouseKind::of("sqlite:///tmp/a.db?busy_timeout=1s"),
            WarehouseKind::Sqlite {
                file: "/tmp/a.db",
                options: "busy_timeout=1s"
            }
        );
        assert_eq!(WarehouseKind::of("postgres://u@h/db"), WarehouseKind::Postgres);
        assert_eq!(WarehouseKind::of("host=h dbname=d"), WarehouseKind::Postgres);
    }
}
