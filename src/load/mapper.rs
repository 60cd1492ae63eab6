//! Mapping staged objects: each object is read (gzip JSON Lines), verified against its
//! manifest while it streams, and every record mapped into rows, which go to the
//! warehouse's [`RowSink`]. Runs on a blocking thread.

use std::io::{BufRead, BufReader, Read};

use super::map::{map_record, RecordError, RecordRows, RunMeta};
use super::{map, BadRecord, LoadError};
use crate::spec::pipeline::{OnError, Resource, WriteMode};
use crate::stage::manifest::ObjectManifest;
use crate::stage::LocalObject;
use crate::value::Cell;

/// Where mapped rows go: PostgreSQL's COPY streams, SQLite's prepared inserts.
pub(super) trait RowSink {
    /// One row of table `table` (an index into the resource's tables), with the run id
    /// when the table has that column and the row's ordinal when it merges. `false` when
    /// the receiving side stopped (it reports why).
    fn row(
        &mut self,
        table: usize,
        cells: &[Cell],
        run_id: Option<&str>,
        ordinal: Option<i64>,
    ) -> Result<bool, LoadError>;
}

/// A record that did not fit, kept for the rejects table.
pub(super) struct Reject {
    pub table: String,
    pub object: String,
    pub record: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
    pub raw: String,
}

/// What mapping a resource's objects gave.
pub(super) struct MapOutcome {
    pub records: u64,
    pub rows: Vec<u64>,
    pub coverage: Vec<map::Coverage>,
    pub rejected: u64,
    pub rejects: Vec<Reject>,
}

pub(super) const CHUNK: usize = 256 << 10;

/// Hashes and counts the bytes of a staged object as they are read, so that the object
/// is checked against its manifest in the same pass that loads it.
struct Verifying<R> {
    inner: R,
    hash: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R: Read> Verifying<R> {
    /// Read what is left and compare size, digest and (when all were read) the record
    /// count with the manifest.
    fn verify(mut self, object: &ObjectManifest, records: Option<u64>) -> Result<(), String> {
        use sha2::Digest;
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| format!("cannot be read to its end: {e}"))?;
        let sha256 = hex::encode(self.hash.finalize());
        if self.bytes != object.bytes {
            return Err(format!(
                "is {} bytes but the manifest says {}",
                self.bytes, object.bytes
            ));
        }
        if sha256 != object.sha256 {
            return Err(format!("has SHA-256 {sha256} but the manifest says {}", object.sha256));
        }
        match records {
            Some(n) if n != object.records => {
                Err(format!("holds {n} records but the manifest says {}", object.records))
            }
            _ => Ok(()),
        }
    }
}

pub(super) fn io_error(what: &str, e: std::io::Error) -> LoadError {
    LoadError::Io(format!("{what}: {e}"))
}

/// Read the staged objects of one resource, verifying each against its manifest, and map
/// every record into rows for `sink`. Runs on a blocking thread.
pub(super) fn map_objects(
    resource: &Resource,
    mut objects: tokio::sync::mpsc::Receiver<(ObjectManifest, LocalObject)>,
    meta: &RunMeta,
    sink: &mut impl RowSink,
) -> Result<MapOutcome, LoadError> {
    let mut mapper = Mapper::new(resource, meta, sink);
    while let Some((object, local)) = objects.blocking_recv() {
        let file = std::fs::File::open(&local.path)
            .map_err(|e| io_error(&format!("open staged object `{}`", object.key), e))?;
        let mut verifying = Verifying {
            inner: file,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
            bytes: 0,
        };
        let tampered = |detail: String| LoadError::Tampered {
            resource: resource.name.clone(),
            object: object.key.clone(),
            detail,
        };
        match mapper.map_object(&object.key, &mut verifying) {
            Ok(Some(records)) => verifying.verify(&object, Some(records)).map_err(tampered)?,
            // The warehouse side stopped; it reports why.
            Ok(None) => return Ok(mapper.out),
            // An object that cannot be read, or holds a record that fails the load, is
            // first of all a tampered one when its bytes are not those the manifest names.
            Err(e @ (LoadError::Io(_) | LoadError::Record(_))) => {
                return Err(match verifying.verify(&object, None) {
                    Err(detail) => tampered(detail),
                    Ok(()) => e,
                })
            }
            Err(e) => return Err(e),
        }
    }
    mapper.finish()
}

/// The state of mapping one resource's records into rows.
struct Mapper<'a, S> {
    resource: &'a Resource,
    meta: &'a RunMeta,
    fields: Option<Vec<String>>,
    sink: &'a mut S,
    out: MapOutcome,
    // Buffers reused from record to record.
    mapped: RecordRows,
    line: Vec<u8>,
    /// The first record, whole, for suggestions when a path matches nothing.
    sample: Option<String>,
}

impl<'a, S: RowSink> Mapper<'a, S> {
    fn new(resource: &'a Resource, meta: &'a RunMeta, sink: &'a mut S) -> Self {
        let tables = &resource.tables;
        Mapper {
            resource,
            meta,
            fields: map::needed_fields(tables),
            sink,
            out: MapOutcome {
                records: 0,
                rows: vec![0; tables.len()],
                coverage: Vec::new(),
                rejected: 0,
                rejects: Vec::new(),
            },
            mapped: RecordRows::default(),
            line: Vec::new(),
            sample: None,
        }
    }

    /// Map every record of one object (gzip JSON Lines); the number of records read, or
    /// `None` when the warehouse side stopped taking rows.
    fn map_object(&mut self, key: &str, input: impl Read) -> Result<Option<u64>, LoadError> {
        let mut reader = BufReader::with_capacity(CHUNK, flate2::read::MultiGzDecoder::new(input));
        let mut record_no = 0u64;
        loop {
            self.line.clear();
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| io_error(&format!("read staged object `{key}`"), e))?;
            if n == 0 {
                return Ok(Some(record_no));
            }
            record_no += 1;
            self.out.records += 1;
            match self.map_line() {
                Ok(()) => {
                    if !self.write_rows()? {
                        return Ok(None);
                    }
                }
                Err(refused) => self.refuse(key, record_no, refused)?,
            }
        }
    }

    /// Parse and map the current line into `mapped`.
    fn map_line(&mut self) -> Result<(), RecordError> {
        let text = std::str::from_utf8(&self.line)
            .map_err(|e| whole_record_error(format!("the staged record is not UTF-8 ({e})"), &self.line))?;
        if self.sample.is_none() {
            self.sample = Some(text.to_string());
        }
        let record = map::parse_record(text, self.fields.as_deref())
            .map_err(|e| whole_record_error(format!("the staged record is not valid JSON ({e})"), &self.line))?;
        map_record(&self.resource.tables, &record, self.meta, &mut self.mapped)
    }

    /// Hand the rows of an accepted record to the sink; `false` when it stopped.
    fn write_rows(&mut self) -> Result<bool, LoadError> {
        for (i, (t, rows)) in self.resource.tables.iter().zip(&self.mapped.rows).enumerate() {
            let run_id = t.run_id_column.then_some(self.meta.run_id.as_str());
            for row in rows {
                self.out.rows[i] += 1;
                let ordinal = (t.write == WriteMode::Merge).then_some(self.out.rows[i] as i64);
                if !self.sink.row(i, row, run_id, ordinal)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// A refused record under the resource's `on_error` policy.
    fn refuse(&mut self, key: &str, record: u64, refused: RecordError) -> Result<(), LoadError> {
        let table = &self.resource.tables[refused.table];
        let error = refused.error;
        match self.resource.tables[0].on_error {
            OnError::Fail => {
                return Err(LoadError::Record(Box::new(BadRecord {
                    resource: self.resource.name.clone(),
                    object: key.to_string(),
                    record,
                    table: table.name.clone(),
                    column: error.column,
                    value: error.value,
                    reason: error.reason,
                })))
            }
            OnError::Skip => {}
            OnError::Quarantine => self.out.rejects.push(Reject {
                table: table.name.clone(),
                object: key.to_string(),
                record,
                column: error.column,
                value: error.value,
                reason: error.reason,
                raw: String::from_utf8_lossy(&self.line).trim_end().to_string(),
            }),
        }
        self.out.rejected += 1;
        Ok(())
    }

    /// The outcome; a column whose path matched nothing fails the load here, before
    /// anything is committed.
    fn finish(mut self) -> Result<MapOutcome, LoadError> {
        let sample = self.sample.as_deref().and_then(|s| serde_json::from_str(s).ok());
        let problems = map::unmatched(&self.resource.tables, &self.mapped.coverage, sample.as_ref());
        if !problems.is_empty() {
            return Err(LoadError::Unmatched {
                resource: self.resource.name.clone(),
                problems,
            });
        }
        self.out.coverage = std::mem::take(&mut self.mapped.coverage);
        Ok(self.out)
    }
}

/// A rejected record as JSON: itself when PostgreSQL's `jsonb` can store it, else its text as a
/// JSON string (a record that is not JSON, or holds `\u0000`, which `jsonb` refuses).
pub(super) fn jsonb_record(raw: &str) -> String {
    let storable = !raw.contains("\\u0000") && serde_json::from_str::<serde_json::Value>(raw).is_ok();
    if storable {
        raw.to_string()
    } else {
        serde_json::Value::String(raw.to_string()).to_string()
    }
}

/// A record that cannot be read at all: refused whole, under the `on_error` policy.
fn whole_record_error(reason: String, line: &[u8]) -> RecordError {
    RecordError {
        table: 0,
        error: map::ColumnError {
            column: "(record)".into(),
            value: crate::util::clip(&String::from_utf8_lossy(line).trim_end().escape_debug().to_string(), 80),
            reason,
        },
    }
}
