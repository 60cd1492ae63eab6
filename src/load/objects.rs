//! Mapping staged objects: each object is read (gzip JSON Lines), verified against its
//! manifest while it streams, and every record mapped into rows, which go to the
//! warehouse's [`RowSink`]. Objects are mapped on several blocking threads at once (one
//! object per thread at a time, each thread with its own sink); what they found is
//! combined at the end, in staging order.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::plan::Plan;
use super::record::{map_record, RecordError, RecordRows, RunMeta};
use super::{record, BadRecord, LoadError};
use crate::spec::pipeline::{OnError, Resource, WriteMode};
use crate::stage::manifest::ObjectManifest;
use crate::stage::LocalObject;
use crate::value::Cell;

/// Where mapped rows go: PostgreSQL's COPY streams, SQLite's prepared inserts. One per
/// mapping thread.
/// Staged objects on their way to the mapper.
pub(super) type Objects = tokio::sync::mpsc::Receiver<(ObjectManifest, LocalObject)>;

pub(super) trait RowSink: Send + 'static {
    /// One row of table `table` (an index into the resource's tables), with the run id
    /// when the table has that column and, when it merges, the values of its staging
    /// table's ordinal columns (`resource::staging_columns`). `false` when the receiving
    /// side stopped (it reports why).
    fn row(&mut self, table: usize, cells: &[Cell], run_id: Option<&str>, ordinals: &[i64]) -> Result<bool, LoadError>;
    /// After the last row: send what waits, and close.
    fn finish(self) -> Result<(), LoadError>;
}

/// How many threads map a resource's objects: the cores, up to four.
pub(super) fn mapping_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// The ordinal of a merge row: objects in staging order, then rows in object order, so
/// that the last row of a key wins whichever thread mapped it.
fn ordinal(object: u64, row: u64) -> i64 {
    ((object << 32) | row) as i64
}

/// A record that did not fit, kept for the rejects table.
pub(super) struct Reject {
    /// The object's place in staging order.
    pub seq: u64,
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
    pub coverage: Vec<record::Coverage>,
    pub rejected: u64,
    pub rejects: Vec<Reject>,
    /// Records a `filter` left out.
    pub filtered: u64,
}

pub(super) const CHUNK: usize = 256 << 10;
/// The largest record kept as the sample of a resource's records.
const SAMPLE_MAX: usize = 1 << 20;

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

/// Staged objects shared by the mapping threads: the channel, the number the next one
/// gets, and whether a thread failed (the others then take no more).
struct Shared {
    objects: Mutex<(Objects, u64)>,
    failed: AtomicBool,
}

impl Shared {
    fn next(&self) -> Option<(u64, ObjectManifest, LocalObject)> {
        if self.failed.load(Ordering::Relaxed) {
            return None;
        }
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let (object, local) = guard.0.blocking_recv()?;
        guard.1 += 1;
        Some((guard.1 - 1, object, local))
    }
}

/// Map every record of a resource's staged objects into rows, one sink per thread,
/// verifying each object against its manifest. What they found, combined.
pub(super) async fn map_objects<S: RowSink>(
    resource: &Resource,
    objects: Objects,
    meta: &RunMeta,
    sinks: Vec<S>,
) -> Result<MapOutcome, LoadError> {
    let shared = Arc::new(Shared {
        objects: Mutex::new((objects, 0)),
        failed: AtomicBool::new(false),
    });
    let threads: Vec<_> = sinks
        .into_iter()
        .map(|mut sink| {
            let (resource, meta, shared) = (resource.clone(), meta.clone(), shared.clone());
            tokio::task::spawn_blocking(move || {
                let mapped = map_shared(&resource, &shared, &meta, &mut sink);
                if mapped.is_err() {
                    shared.failed.store(true, Ordering::Relaxed);
                }
                let part = mapped?;
                sink.finish()?;
                Ok::<_, LoadError>(part)
            })
        })
        .collect();
    let mut parts = Vec::new();
    let mut failure = None;
    for thread in threads {
        match thread.await {
            Ok(Ok(part)) => parts.push(part),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(LoadError::Io(format!("a mapping thread failed: {e}")));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => combine(resource, parts),
    }
}

/// What one thread found.
struct Part {
    out: MapOutcome,
    /// The first record of the earliest object the thread mapped, and that object's place.
    sample: Option<(u64, String)>,
}

/// One thread's work: objects from `shared` until there are none (or a thread failed, or
/// the sink stopped taking rows).
fn map_shared(
    resource: &Resource,
    shared: &Shared,
    meta: &RunMeta,
    sink: &mut impl RowSink,
) -> Result<Part, LoadError> {
    let mut mapper = Mapper::new(resource, meta, sink);
    while let Some((seq, object, local)) = shared.next() {
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
        match mapper.map_object(&object.key, seq, &mut verifying) {
            Ok(Some(records)) => verifying.verify(&object, Some(records)).map_err(tampered)?,
            // The warehouse side stopped; it reports why.
            Ok(None) => break,
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
    Ok(mapper.finish())
}

/// The threads' parts as one outcome, in staging order; a column whose path matched
/// nothing in any of them fails the load here, before anything is committed.
fn combine(resource: &Resource, parts: Vec<Part>) -> Result<MapOutcome, LoadError> {
    let tables = resource.tables.len();
    let mut out = MapOutcome {
        records: 0,
        rows: vec![0; tables],
        coverage: Vec::new(),
        rejected: 0,
        rejects: Vec::new(),
        filtered: 0,
    };
    let mut sample: Option<(u64, String)> = None;
    for part in parts {
        let p = part.out;
        out.records += p.records;
        out.rejected += p.rejected;
        out.filtered += p.filtered;
        out.rejects.extend(p.rejects);
        for (total, n) in out.rows.iter_mut().zip(&p.rows) {
            *total += n;
        }
        if out.coverage.is_empty() {
            out.coverage = p.coverage;
        } else {
            for (total, c) in out.coverage.iter_mut().zip(&p.coverage) {
                total.rows += c.rows;
                for (t, m) in total.matched.iter_mut().zip(&c.matched) {
                    *t += m;
                }
            }
        }
        if let Some((seq, text)) = part.sample {
            if sample.as_ref().is_none_or(|(first, _)| seq < *first) {
                sample = Some((seq, text));
            }
        }
    }
    out.rejects.sort_by_key(|r| (r.seq, r.record));
    let sample = sample.and_then(|(_, s)| serde_json::from_str(&s).ok());
    let problems = record::unmatched(&resource.tables, &out.coverage, sample.as_ref());
    if !problems.is_empty() {
        return Err(LoadError::Unmatched {
            resource: resource.name.clone(),
            problems,
        });
    }
    Ok(out)
}

/// The state of mapping one resource's records into rows.
struct Mapper<'a, S> {
    resource: &'a Resource,
    meta: &'a RunMeta,
    fields: Option<Vec<String>>,
    /// The single-pass plan, unless a path needs the general evaluator.
    plan: Option<Plan>,
    sink: &'a mut S,
    out: MapOutcome,
    // Buffers reused from record to record.
    mapped: RecordRows,
    line: Vec<u8>,
    /// The object being mapped (its place in staging order), and its rows so far per table.
    seq: u64,
    object_rows: Vec<u64>,
    /// The first record, whole, for suggestions when a path matches nothing.
    sample: Option<(u64, String)>,
}

impl<'a, S: RowSink> Mapper<'a, S> {
    fn new(resource: &'a Resource, meta: &'a RunMeta, sink: &'a mut S) -> Self {
        let tables = &resource.tables;
        Mapper {
            resource,
            meta,
            fields: record::needed_fields(tables, &resource.filter),
            plan: Plan::new(tables, &resource.filter),
            sink,
            out: MapOutcome {
                records: 0,
                rows: vec![0; tables.len()],
                coverage: Vec::new(),
                rejected: 0,
                rejects: Vec::new(),
                filtered: 0,
            },
            mapped: RecordRows::default(),
            line: Vec::new(),
            seq: 0,
            object_rows: vec![0; tables.len()],
            sample: None,
        }
    }

    /// Map every record of one object (gzip JSON Lines); the number of records read, or
    /// `None` when the warehouse side stopped taking rows.
    fn map_object(&mut self, key: &str, seq: u64, input: impl Read) -> Result<Option<u64>, LoadError> {
        self.seq = seq;
        self.object_rows.iter_mut().for_each(|n| *n = 0);
        let mut reader = BufReader::with_capacity(CHUNK, flate2::read::MultiGzDecoder::new(input));
        let mut record_no = 0u64;
        loop {
            self.line.clear();
            if self.line.capacity() > 4 * CHUNK {
                // A huge record's buffer is not kept for the small ones after it.
                self.line = Vec::new();
            }
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| io_error(&format!("read staged object `{key}`"), e))?;
            if n == 0 {
                return Ok(Some(record_no));
            }
            record_no += 1;
            self.out.records += 1;
            match self.map_line() {
                Ok(true) => {
                    if !self.write_rows()? {
                        return Ok(None);
                    }
                }
                Ok(false) => self.out.filtered += 1,
                Err(refused) => self.refuse(key, record_no, refused)?,
            }
        }
    }

    /// Parse and map the current line into `mapped`; `false` when a `filter` leaves the
    /// record out.
    fn map_line(&mut self) -> Result<bool, RecordError> {
        let text = std::str::from_utf8(&self.line)
            .map_err(|e| whole_record_error(format!("the staged record is not UTF-8 ({e})"), &self.line))?;
        // A record for the messages about paths that matched nothing; not a huge one,
        // which would be held for the whole load.
        if self.sample.is_none() && text.len() <= SAMPLE_MAX {
            self.sample = Some((self.seq, text.to_string()));
        }
        if let Some((plan, cap)) = self.plan.as_ref().and_then(|plan| Some((plan, plan.read(text)?))) {
            if !plan.keeps(&self.resource.filter, &cap) {
                return Ok(false);
            }
            return plan
                .map(&self.resource.tables, &cap, self.meta, &mut self.mapped)
                .map(|()| true);
        }
        let record = record::parse_record(text, self.fields.as_deref())
            .map_err(|e| whole_record_error(format!("the staged record is not valid JSON ({e})"), &self.line))?;
        if !self.resource.filter.iter().all(|f| f.holds(&record)) {
            return Ok(false);
        }
        map_record(&self.resource.tables, &record, self.meta, &mut self.mapped).map(|()| true)
    }

    /// Hand the rows of an accepted record to the sink; `false` when it stopped.
    fn write_rows(&mut self) -> Result<bool, LoadError> {
        for (i, (t, rows)) in self.resource.tables.iter().zip(&self.mapped.rows).enumerate() {
            let run_id = t.run_id_column.then_some(self.meta.run_id.as_str());
            for row in rows {
                self.out.rows[i] += 1;
                self.object_rows[i] += 1;
                // The row's own ordinal, and for a nested row its record's (the root row's).
                let both = [
                    ordinal(self.seq, self.object_rows[i]),
                    ordinal(self.seq, self.object_rows[0]),
                ];
                let ordinals = match (t.write, i) {
                    (WriteMode::Merge, 0) => &both[..1],
                    (WriteMode::Merge, _) => &both[..],
                    _ => &[],
                };
                if !self.sink.row(i, row, run_id, ordinals)? {
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
                seq: self.seq,
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

    /// What this thread found.
    fn finish(mut self) -> Part {
        self.out.coverage = std::mem::take(&mut self.mapped.coverage);
        Part {
            out: self.out,
            sample: self.sample,
        }
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
        error: record::ColumnError {
            column: "(record)".into(),
            value: crate::util::clip(&String::from_utf8_lossy(line).trim_end().escape_debug().to_string(), 80),
            reason,
        },
    }
}
