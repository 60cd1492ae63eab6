//! Streams raw records into gzip JSON Lines parts: each part is written to a temporary
//! file while its SHA-256 is computed, and handed to the store once it reaches the part
//! size. Memory holds one compression buffer, whatever the number of records.

use std::fs::File;
use std::io::{BufWriter, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::manifest::ObjectManifest;
use super::{Backend, StageError};

/// Counts and hashes what passes through to the file.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct OpenPart {
    encoder: GzEncoder<Hashing<BufWriter<File>>>,
    temp: tempfile::TempPath,
    raw_bytes: u64,
    records: u64,
}

/// Append JSON text to `out` on one line: white space outside strings is dropped (an API
/// may pretty-print its pages), everything else is kept byte for byte. Never fails, so a
/// record the JSON grammar delimited is staged whatever its strings hold.
pub(crate) fn compact_json(raw: &str, out: &mut Vec<u8>) {
    if memchr::memchr2(b'\n', b'\r', raw.as_bytes()).is_none() {
        out.extend_from_slice(raw.as_bytes());
        return;
    }
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw.as_bytes() {
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
            in_string = b == b'"';
        }
    }
}

pub(crate) struct PartWriter<'a, S: Backend> {
    store: &'a S,
    key: Box<dyn Fn(u32) -> String + Send + Sync + 'a>,
    part_size: u64,
    current: Option<OpenPart>,
    next_part: u32,
    objects: Vec<ObjectManifest>,
    line: Vec<u8>,
    notify: Option<tokio::sync::mpsc::UnboundedSender<ObjectManifest>>,
    journal: Option<Journal>,
}

/// The keys a run has stored so far, kept outside the writers so that a failed run can
/// remove them even when its writer was dropped mid-way.
pub(crate) type Journal = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl<'a, S: Backend> PartWriter<'a, S> {
    /// `key(n)` names part `n`.
    pub(crate) fn new(store: &'a S, part_size: u64, key: impl Fn(u32) -> String + Send + Sync + 'a) -> Self {
        PartWriter {
            store,
            key: Box::new(key),
            part_size,
            current: None,
            next_part: 0,
            objects: Vec::new(),
            line: Vec::with_capacity(4096),
            notify: None,
            journal: None,
        }
    }

    /// Also announce each object as soon as it is stored (a load can start on it).
    pub(crate) fn notify(mut self, to: Option<tokio::sync::mpsc::UnboundedSender<ObjectManifest>>) -> Self {
        self.notify = to;
        self
    }

    /// Go on after the parts `objects` a run stored before (its checkpoint's).
    pub(crate) fn after(mut self, objects: Vec<ObjectManifest>) -> Self {
        self.next_part = objects.len() as u32;
        self.objects = objects;
        self
    }

    /// The parts stored so far, in order.
    pub(crate) fn stored(&self) -> &[ObjectManifest] {
        &self.objects
    }

    /// Store the part being written now, however small (a checkpoint follows).
    pub(crate) async fn seal(&mut self) -> Result<(), StageError> {
        self.close_part().await
    }

    /// Also note each stored key in `journal`.
    pub(crate) fn journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    fn open_part(&self) -> Result<OpenPart, StageError> {
        let dir = self.store.work_dir();
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        let tmp = crate::util::temp_file_in(&dir).map_err(|e| StageError::io("create temporary file in", &dir, e))?;
        let (file, temp) = tmp.into_parts();
        let sink = Hashing {
            inner: BufWriter::with_capacity(256 << 10, file),
            hash: Sha256::new(),
            bytes: 0,
        };
        Ok(OpenPart {
            encoder: GzEncoder::new(sink, Compression::fast()),
            temp,
            raw_bytes: 0,
            records: 0,
        })
    }

    /// Append one raw record as a JSON line.
    pub(crate) async fn write(&mut self, record: &Value) -> Result<(), StageError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).expect("a JSON value serializes");
        self.line.push(b'\n');
        self.write_line().await
    }

    /// Append one record given as its raw JSON text, unchanged unless it spans lines.
    pub(crate) async fn write_raw(&mut self, record: &str) -> Result<(), StageError> {
        self.line.clear();
        compact_json(record, &mut self.line);
        self.line.push(b'\n');
        self.write_line().await
    }

    async fn write_line(&mut self) -> Result<(), StageError> {
        if self.current.is_none() {
            self.current = Some(self.open_part()?);
        }
        let part = self.current.as_mut().expect("opened above");
        part.encoder
            .write_all(&self.line)
            .map_err(|e| StageError::io("write", &part.temp, e))?;
        part.raw_bytes += self.line.len() as u64;
        part.records += 1;
        if part.raw_bytes >= self.part_size {
            self.close_part().await?;
        }
        Ok(())
    }

    async fn close_part(&mut self) -> Result<(), StageError> {
        let Some(part) = self.current.take() else { return Ok(()) };
        let mut sink = part
            .encoder
            .finish()
            .map_err(|e| StageError::io("compress", &part.temp, e))?;
        sink.flush().map_err(|e| StageError::io("write", &part.temp, e))?;
        let key = (self.key)(self.next_part);
        self.next_part += 1;
        let sha256 = hex::encode(sink.hash.finalize_reset());
        let bytes = sink.bytes;
        drop(sink);
        self.store.put_file(&key, &part.temp).await?;
        if let Some(j) = &self.journal {
            j.lock().unwrap_or_else(|e| e.into_inner()).push(key.clone());
        }
        // The store moved or copied the file; the temp path may already be gone.
        let _ = part.temp.close();
        let object = ObjectManifest {
            key,
            records: part.records,
            bytes,
            sha256,
        };
        if let Some(to) = &self.notify {
            // A load that went away is reported by the load itself.
            let _ = to.send(object.clone());
        }
        self.objects.push(object);
        Ok(())
    }

    /// Close the last part; the objects written, in order.
    pub(crate) async fn finish(mut self) -> Result<Vec<ObjectManifest>, StageError> {
        self.close_part().await?;
        Ok(self.objects)
    }
}

#[cfg(test)]
mod tests {
    use super::compact_json;

    #[test]
    fn pretty_records_are_compacted_byte_for_byte_inside_strings() {
        let mut out = Vec::new();
        compact_json("{\n  \"a\": \"x \\\" y\\ud800\",\n  \"b\": [1, 2]\n}", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"x \" y\ud800","b":[1,2]}"#);
        let mut out = Vec::new();
        compact_json(r#"{"a": 1}"#, &mut out);
        assert_eq!(out, br#"{"a": 1}"#, "one-line records stay as they are");
    }
}
