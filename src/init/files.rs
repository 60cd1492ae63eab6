//! Bodies that are files, not JSON: `init` tells JSON Lines, CSV (its delimiter and
//! encoding) and XML (the repeated element that is the records) apart, gzipped or not,
//! and reads a sample of records from them as a run would.

use serde_json::Value;

use crate::extract::decode::{decode, Shape};
use crate::spec::jsonpath::JsonPath;
use crate::spec::pipeline::{Compression, CsvFormat, Format, XmlFormat};

/// Records read from a sample.
const SAMPLE: usize = 2000;

/// What a file body is, as the spec will say it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileBody {
    /// The resource's lines that say it: `format: csv` and its settings.
    pub yaml: Vec<String>,
    /// Why, for the comment above the resource.
    pub why: String,
    pub records: Vec<Value>,
}

/// What `body` is when it is JSON Lines, CSV or XML (gzipped or not), with its first
/// records; `None` when it is none of them.
pub(crate) fn detect(body: &bytes::Bytes, content_type: Option<&str>) -> Option<FileBody> {
    let gzip = crate::extract::decode::gzipped(Compression::Auto, body);
    let plain = crate::extract::decode::whole(body.clone(), Compression::Auto, 1 << 30).ok()?;
    let text = plain.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&plain);
    let gz = if gzip { "a gzipped " } else { "" };
    let content_type = content_type.unwrap_or_default().to_ascii_lowercase();
    let (format, yaml, why) = if text.trim_ascii_start().starts_with(b"<") {
        let records = xml_records(text)?;
        let yaml = vec!["format: xml".into(), format!("xml: {{records: {}}}", records.join("/"))];
        let why = format!("{gz}XML body: `{}` is the element that repeats", records.join("/"));
        (Format::Xml(XmlFormat { records }), yaml, why)
    } else if json_lines(text) {
        (
            Format::Jsonl,
            vec!["format: jsonl".into()],
            format!("{gz}JSON Lines body: a record per line"),
        )
    } else {
        let (csv, why) = csv_format(text, &content_type)?;
        let mut settings = Vec::new();
        if csv.delimiter != b',' {
            let d = match csv.delimiter {
                b'\t' => "\"\\t\"".to_string(),
                d => format!("\"{}\"", d as char),
            };
            settings.push(format!("delimiter: {d}"));
        }
        if csv.latin1 {
            settings.push("encoding: latin-1".into());
        }
        let mut yaml = vec!["format: csv".to_string()];
        if !settings.is_empty() {
            yaml.push(format!("csv: {{{}}}", settings.join(", ")));
        }
        (Format::Csv(csv), yaml, format!("{gz}CSV body: {why}"))
    };
    let shape = Shape {
        format,
        compression: Compression::None,
        records: JsonPath::parse("$").ok()?,
        limit: u64::MAX,
    };
    let mut records = Vec::new();
    let read = decode(text, &shape, &mut |batch| {
        records.extend(batch);
        records.len() < SAMPLE
    });
    // A body that fails to read whole (past the sample) still shows its records.
    if read.is_err() && records.is_empty() {
        return None;
    }
    records.truncate(SAMPLE);
    Some(FileBody { yaml, why, records })
}

/// Two or more lines, each a JSON object or array.
fn json_lines(text: &[u8]) -> bool {
    let mut lines = text
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty());
    let mut n = 0;
    for line in lines.by_ref().take(200) {
        if !matches!(line.first(), Some(b'{' | b'[')) || serde_json::from_slice::<Value>(line).is_err() {
            return false;
        }
        n += 1;
    }
    n >= 2
}

/// The delimiter that splits the first rows into the same two or more fields each, and
/// the encoding (Latin-1 when the bytes are not UTF-8).
fn csv_format(text: &[u8], content_type: &str) -> Option<(CsvFormat, String)> {
    let latin1 = std::str::from_utf8(text).is_err();
    let best = [b',', b';', b'\t', b'|']
        .into_iter()
        .filter_map(|d| {
            let mut rows = csv::ReaderBuilder::new()
                .delimiter(d)
                .has_headers(false)
                .flexible(true)
                .from_reader(text);
            let widths: Vec<usize> = rows
                .byte_records()
                .take(50)
                .map_while(Result::ok)
                .map(|r| r.len())
                .collect();
            let width = *widths.first()?;
            (widths.len() >= 2 && width >= 2 && widths.iter().all(|w| *w == width)).then_some((d, width))
        })
        .max_by_key(|(_, width)| *width)
        .or_else(|| content_type.contains("csv").then_some((b',', 1)))?;
    let shown = match best.0 {
        b'\t' => "tab".to_string(),
        d => format!("`{}`", d as char),
    };
    let why = format!(
        "{} fields a row, {shown}-separated, the first row naming them{}",
        best.1,
        if latin1 { "; not UTF-8, so read as Latin-1" } else { "" }
    );
    Some((
        CsvFormat {
            delimiter: best.0,
            quote: b'"',
            names: None,
            latin1,
            null: vec![String::new()],
        },
        why,
    ))
}

/// The records' element path: the shallowest element that repeats under a parent that
/// does not.
fn xml_records(text: &[u8]) -> Option<Vec<String>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(text);
    let mut path: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut order: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).ok()?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                let key = path.join("/");
                let n = counts.entry(key.clone()).or_insert(0);
                if *n == 0 {
                    order.push(key);
                }
                *n += 1;
                if empty {
                    path.pop();
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
        if order.len() > 10_000 {
            break;
        }
    }
    let parent_once = |key: &str| {
        key.rsplit_once('/')
            .is_none_or(|(parent, _)| counts.get(parent) == Some(&1))
    };
    order
        .iter()
        .filter(|k| counts[*k] >= 2 && parent_once(k))
        .min_by_key(|k| k.matches('/').count())
        .map(|k| k.split('/').map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &'static [u8]) -> bytes::Bytes {
        bytes::Bytes::from_static(b)
    }

    #[test]
    fn csv_json_lines_and_xml_are_told_apart() {
        let csv = detect(&body(b"id;name\n1;a\n2;b\n"), None).unwrap();
        assert_eq!(csv.yaml, vec!["format: csv", "csv: {delimiter: \";\"}"]);
        assert_eq!(csv.records.len(), 2);
        assert_eq!(csv.records[1]["name"], "b");
        let lines = detect(&body(b"{\"a\":1}\n{\"a\":2}\n"), None).unwrap();
        assert_eq!(lines.yaml, vec!["format: jsonl"]);
        let xml = detect(
            &body(b"<feed><title>t</title><entry><id>1</id></entry><entry><id>2</id></entry></feed>"),
            None,
        )
        .unwrap();
        assert_eq!(xml.yaml, vec!["format: xml", "xml: {records: feed/entry}"]);
        assert_eq!(xml.records[1]["id"], "2");
        assert!(detect(&body(b"just some text"), Some("text/plain")).is_none());
    }
}
