//! Bodies that are not one JSON document: JSON Lines, CSV and XML, each read as it
//! streams in (on a blocking thread, from the chunks the connection hands over) and cut
//! into batches of records; and gzipped files, whether streamed or whole. Memory holds a
//! few chunks and one batch, whatever the size of the file.

use std::io::{BufRead, BufReader, Read};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::spec::jsonpath::JsonPath;
use crate::spec::pipeline::{Compression, CsvFormat, Format, XmlFormat};

/// Records handed on at once.
const BATCH: usize = 1000;

/// How one body is read.
#[derive(Clone)]
pub(crate) struct Shape {
    pub format: Format,
    pub compression: Compression,
    /// Applied to each line, row or element.
    pub records: JsonPath,
    /// The most decompressed bytes a body may have.
    pub limit: u64,
}

/// What went wrong reading a body.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// More decompressed bytes than the limit.
    TooLarge,
    /// The connection broke off (or the bytes are not what the compression says).
    Read(String),
    /// A line, row or element that does not read: where, and why.
    At { at: String, detail: String },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge => write!(f, "larger than max_response_size"),
            DecodeError::Read(e) => write!(f, "{e}"),
            DecodeError::At { at, detail } => write!(f, "{at}: {detail}"),
        }
    }
}

/// What a body held.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub records: u64,
    /// The last record, for a `last_record` cursor.
    pub last: Option<Value>,
    /// `emit` said it had enough.
    pub stopped: bool,
}

/// The chunks of a body as they come, read as one stream; an `Err` chunk is a broken
/// connection (never an end of file).
pub(crate) struct Chunks {
    pub rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    pub current: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Counts what passes and fails past the limit.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

/// The marker of [`Limited`]'s error.
#[derive(Debug)]
struct OverLimit;
impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("larger than max_response_size")
    }
}
impl std::error::Error for OverLimit {}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(OverLimit));
        }
        Ok(n)
    }
}

fn io_error(e: std::io::Error) -> DecodeError {
    if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
        return DecodeError::TooLarge;
    }
    DecodeError::Read(e.to_string())
}

/// Whether a body starting with `head` is read as gzip: always, never, or (`auto`) when
/// it starts with gzip's magic bytes.
pub(crate) fn gzipped(compression: Compression, head: &[u8]) -> bool {
    match compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Auto => head.starts_with(&[0x1f, 0x8b]),
    }
}

/// `input` decompressed as `compression` says (`auto`: gzip when it starts with gzip's
/// magic bytes), limited, with a UTF-8 byte-order mark skipped.
fn opened<'a>(input: impl Read + 'a, compression: Compression, limit: u64) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut raw = BufReader::with_capacity(64 << 10, input);
    let gzip = gzipped(compression, raw.fill_buf()?);
    let inner: Box<dyn Read + 'a> = match gzip {
        true => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        false => Box::new(raw),
    };
    let mut out = BufReader::with_capacity(64 << 10, Limited { inner, read: 0, limit });
    if out.fill_buf()?.starts_with(&[0xef, 0xbb, 0xbf]) {
        out.consume(3);
    }
    Ok(Box::new(out))
}

/// A whole body (a JSON page) decompressed when it is a gzipped file.
pub(crate) fn whole(body: Bytes, compression: Compression, limit: u64) -> Result<Bytes, DecodeError> {
    let gzip = gzipped(compression, &body);
    if !gzip {
        return Ok(body);
    }
    let mut out = Vec::new();
    let mut reader = Limited {
        inner: flate2::read::MultiGzDecoder::new(&body[..]),
        read: 0,
        limit,
    };
    reader.read_to_end(&mut out).map_err(io_error)?;
    Ok(Bytes::from(out))
}

/// Hands records on in batches, each through the records path.
struct Batcher<'a> {
    records: &'a JsonPath,
    whole: bool,
    batch: Vec<Value>,
    emit: &'a mut dyn FnMut(Vec<Value>) -> bool,
    summary: Summary,
}

impl Batcher<'_> {
    /// Add one line, row or element; false once `emit` has had enough.
    fn add(&mut self, item: Value) -> bool {
        if self.whole {
            self.batch.push(item);
        } else {
            self.batch.extend(self.records.query(&item).into_iter().cloned());
        }
        self.batch.len() < BATCH || self.flush()
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        self.summary.records += batch.len() as u64;
        self.summary.last = batch.last().cloned();
        if !(self.emit)(batch) {
            self.summary.stopped = true;
            return false;
        }
        true
    }
}

/// Read `input` as `shape` says, handing batches of records to `emit` (which returns
/// false to stop).
pub(crate) fn decode(
    input: impl Read,
    shape: &Shape,
    emit: &mut dyn FnMut(Vec<Value>) -> bool,
) -> Result<Summary, DecodeError> {
    let reader = opened(input, shape.compression, shape.limit).map_err(io_error)?;
    let mut out = Batcher {
        records: &shape.records,
        whole: shape.records.as_str() == "$",
        batch: Vec::with_capacity(BATCH),
        emit,
        summary: Summary::default(),
    };
    let going = match &shape.format {
        Format::Jsonl => jsonl(reader, &mut out)?,
        Format::Csv(c) => csv_rows(reader, c, &mut out)?,
        Format::Xml(x) => xml(reader, x, &mut out)?,
        Format::Json => {
            return Err(DecodeError::Read("a JSON body is read whole, not streamed".into()));
        }
    };
    if going {
        out.flush();
    }
    Ok(out.summary)
}

fn jsonl(mut reader: Box<dyn BufRead + '_>, out: &mut Batcher) -> Result<bool, DecodeError> {
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io_error)? == 0 {
            return Ok(true);
        }
        number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_slice(text).map_err(|e| DecodeError::At {
            at: format!("line {number}"),
            detail: format!(
                "not JSON ({e}): {}",
                crate::util::clip(&String::from_utf8_lossy(text), 80)
            ),
        })?;
        if !out.add(value) {
            return Ok(false);
        }
    }
}

fn csv_rows(reader: Box<dyn BufRead + '_>, c: &CsvFormat, out: &mut Batcher) -> Result<bool, DecodeError> {
    let mut rows = csv::ReaderBuilder::new()
        .delimiter(c.delimiter)
        .quote(c.quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let text = |bytes: &[u8], row: u64| -> Result<String, DecodeError> {
        match c.latin1 {
            true => Ok(bytes.iter().map(|&b| b as char).collect()),
            false => String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::At {
                at: format!("row {row}"),
                detail: "a field is not UTF-8 text (say `csv: {encoding: latin-1}` if the file is Latin-1)".into(),
            }),
        }
    };
    let mut names = c.names.clone();
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    loop {
        let more = rows.read_byte_record(&mut record).map_err(|e| match e.kind() {
            csv::ErrorKind::Io(_) => match e.into_kind() {
                csv::ErrorKind::Io(io) => io_error(io),
                _ => DecodeError::Read("the body broke off".into()),
            },
            _ => DecodeError::At {
                at: format!("row {}", row + 1),
                detail: e.to_string(),
            },
        })?;
        if !more {
            return Ok(true);
        }
        row += 1;
        let Some(header) = &names else {
            let header = record.iter().map(|f| text(f, row)).collect::<Result<Vec<_>, _>>()?;
            let mut seen = std::collections::HashSet::new();
            if let Some(n) = header.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(DecodeError::At {
                    at: "the header row".into(),
                    detail: format!("field `{n}` is named twice"),
                });
            }
            names = Some(header);
            continue;
        };
        // A blank line between rows.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != header.len() {
            return Err(DecodeError::At {
                at: format!("row {row}"),
                detail: format!(
                    "{} fields where the header has {} ({})",
                    record.len(),
                    header.len(),
                    header.join(", ")
                ),
            });
        }
        let mut object = Map::with_capacity(header.len());
        for (name, field) in header.iter().zip(record.iter()) {
            let value = text(field, row)?;
            let value = match c.null.contains(&value) {
                true => Value::Null,
                false => Value::String(value),
            };
            object.insert(name.clone(), value);
        }
        if !out.add(Value::Object(object)) {
            return Ok(false);
        }
    }
}

/// One element being read: its name and fields, and its text so far.
struct Element {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

impl Element {
    fn new(e: &quick_xml::events::BytesStart) -> Result<Element, String> {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let mut fields = Map::new();
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?
                .into_owned();
            fields.insert(key, Value::String(value));
        }
        Ok(Element {
            name,
            fields,
            text: String::new(),
        })
    }

    /// The element as JSON: its text alone, or its fields (with `_text` when it has both).
    fn value(self) -> Value {
        let text = self.text.trim();
        match (self.fields.is_empty(), text.is_empty()) {
            (true, true) => Value::Null,
            (true, false) => Value::String(text.to_string()),
            (false, empty) => {
                let mut fields = self.fields;
                if !empty {
                    fields.insert("_text".into(), Value::String(text.to_string()));
                }
                Value::Object(fields)
            }
        }
    }
}

/// Add `value` as field `name`: a repeated name makes a list.
fn put(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        None => {
            fields.insert(name, value);
        }
        Some(Value::Array(list)) => list.push(value),
        Some(first) => {
            let first = first.take();
            fields.insert(name, Value::Array(vec![first, value]));
        }
    }
}

fn xml(reader: Box<dyn BufRead + '_>, x: &XmlFormat, out: &mut Batcher) -> Result<bool, DecodeError> {
    use quick_xml::events::Event;
    let mut xml = quick_xml::Reader::from_reader(reader);
    xml.config_mut().trim_text(false);
    let mut buf = Vec::new();
    // The names of the open elements above the records, and the record being read.
    let mut path: Vec<String> = Vec::new();
    let mut open: Vec<Element> = Vec::new();
    let mut count = 0u64;
    let at = |xml: &quick_xml::Reader<Box<dyn BufRead + '_>>, count: u64| {
        format!("byte {} (after {count} records)", xml.buffer_position())
    };
    let matches = |path: &[String], name: &str| {
        path.len() + 1 == x.records.len()
            && x.records
                .iter()
                .zip(path.iter().map(String::as_str).chain([name]))
                .all(|(want, got)| want == "*" || want == got)
    };
    loop {
        let event = xml.read_event_into(&mut buf).map_err(|e| match e {
            quick_xml::Error::Io(io) => DecodeError::Read(io.to_string()),
            e => DecodeError::At {
                at: at(&xml, count),
                detail: format!("not well-formed XML: {e}"),
            },
        })?;
        let bad = |detail: String| DecodeError::At {
            at: at(&xml, count),
            detail,
        };
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
            if open.is_empty() && !matches(&path, &name) {
                if !empty {
                    path.push(name);
                }
                buf.clear();
                continue;
            }
            open.push(Element::new(e).map_err(bad)?);
            if !empty {
                buf.clear();
                continue;
            }
        }
        match event {
            Event::Start(_) | Event::Empty(_) | Event::End(_) => {
                let Some(done) = open.pop() else {
                    path.pop();
                    buf.clear();
                    continue;
                };
                let name = done.name.clone();
                let value = done.value();
                match open.last_mut() {
                    Some(parent) => put(&mut parent.fields, name, value),
                    None => {
                        count += 1;
                        let record = match value {
                            Value::Null => Value::Object(Map::new()),
                            v => v,
                        };
                        if !out.add(record) {
                            return Ok(false);
                        }
                    }
                }
            }
            Event::Text(t) => {
                if let Some(e) = open.last_mut() {
                    e.text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?);
                }
            }
            Event::CData(t) => {
                if let Some(e) = open.last_mut() {
                    e.text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(e) = open.last_mut() {
                    let c = match r.resolve_char_ref().map_err(|e| bad(e.to_string()))? {
                        Some(c) => c.to_string(),
                        None => {
                            let name = r.decode().map_err(|e| bad(e.to_string()))?;
                            match name.as_ref() {
                                "amp" => "&".into(),
                                "lt" => "<".into(),
                                "gt" => ">".into(),
                                "quot" => "\"".into(),
                                "apos" => "'".into(),
                                other => return Err(bad(format!("unknown entity `&{other};`"))),
                            }
                        }
                    };
                    e.text.push_str(&c);
                }
            }
            Event::Eof => return Ok(true),
            _ => {}
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(body: &[u8], format: Format, records: &str) -> Result<Vec<Value>, DecodeError> {
        let shape = Shape {
            format,
            compression: Compression::Auto,
            records: JsonPath::parse(records).unwrap(),
            limit: 1 << 20,
        };
        let mut got = Vec::new();
        decode(body, &shape, &mut |b| {
            got.extend(b);
            true
        })?;
        Ok(got)
    }

    fn csv_format() -> Format {
        Format::Csv(CsvFormat {
            delimiter: b',',
            quote: b'"',
            names: None,
            latin1: false,
            null: vec![String::new()],
        })
    }

    #[test]
    fn json_lines_skip_blank_lines_and_name_a_bad_one() {
        let got = all(b"{\"a\":1}\n\n{\"a\":2.50}\r\n", Format::Jsonl, "$").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["a"].to_string(), "2.50");
        let e = all(b"{\"a\":1}\n{oops}\n", Format::Jsonl, "$").unwrap_err();
        assert!(e.to_string().starts_with("line 2: not JSON"), "{e}");
        let nested = all(b"{\"node\":{\"id\":1}}\n", Format::Jsonl, "$.node").unwrap();
        assert_eq!(nested[0]["id"], 1);
    }

    #[test]
    fn csv_rows_quote_null_and_count_fields() {
        let body = "\u{feff}id,name,note\n1,\"Smith, J\",\n2,\"say \"\"hi\"\"\",x\n";
        let got = all(body.as_bytes(), csv_format(), "$").unwrap();
        assert_eq!(got[0]["id"], "1");
        assert_eq!(got[0]["name"], "Smith, J");
        assert!(got[0]["note"].is_null());
        assert_eq!(got[1]["name"], "say \"hi\"");
        let e = all(b"id,name\n1,a\n2\n3,b,c\n", csv_format(), "$").unwrap_err();
        assert!(e.to_string().contains("row 3: 1 fields where the header has 2"), "{e}");
    }

    #[test]
    fn gzip_is_found_by_its_magic_and_the_limit_counts_decompressed_bytes() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..5000 {
            writeln!(gz, "{{\"i\":{i}}}").unwrap();
        }
        let gz = gz.finish().unwrap();
        assert_eq!(all(&gz, Format::Jsonl, "$").unwrap().len(), 5000);
        let shape = Shape {
            format: Format::Jsonl,
            compression: Compression::Auto,
            records: JsonPath::parse("$").unwrap(),
            limit: 10_000,
        };
        let e = decode(&gz[..], &shape, &mut |_| true).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge), "{e}");
    }

    #[test]
    fn xml_elements_become_objects() {
        let body = br#"<?xml version="1.0"?>
<rss><channel><title>t</title>
<item id="1"><title>A &amp; B</title><category>x</category><category>y</category></item>
<item id="2"><title><![CDATA[<b>C</b>]]></title><link href="/c"/></item>
</channel></rss>"#;
        let x = Format::Xml(XmlFormat {
            records: vec!["rss".into(), "channel".into(), "item".into()],
        });
        let got = all(body, x.clone(), "$").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["id"], "1");
        assert_eq!(got[0]["title"], "A & B");
        assert_eq!(got[0]["category"], serde_json::json!(["x", "y"]));
        assert_eq!(got[1]["title"], "<b>C</b>");
        assert_eq!(got[1]["link"]["href"], "/c");
        let e = all(b"<rss><channel><item></channel></rss>", x, "$").unwrap_err();
        assert!(e.to_string().contains("not well-formed XML"), "{e}");
    }
}
