//! The spec language: parse ([`parse`]), check ([`compile`]) and the validated
//! [`Pipeline`] everything else reads. Offline throughout: validating a spec needs no
//! environment variable, secret or network.

pub(crate) mod compile;
pub(crate) mod diagnostic;
pub(crate) mod ident;
pub(crate) mod interp;
pub(crate) mod jsonpath;
pub(crate) mod location;
pub(crate) mod model;
pub(crate) mod parse;
pub(crate) mod pipeline;
pub(crate) mod placeholder;
pub(crate) mod reference;
pub(crate) mod shape;
pub(crate) mod tree;
pub(crate) mod units;

pub use diagnostic::Diagnostic;
pub use pipeline::Pipeline;

/// The JSON Schema of the spec, generated from the raw types.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(model::RawSpec)
}

/// The JSON Schema as checked in at `schemas/pipeline.schema.json`.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).expect("schema serializes");
    s.push('\n');
    s
}

/// A spec that failed to load: its diagnostics, and its text when it could be read (for
/// rendering source lines under the messages).
#[derive(Debug)]
pub struct SpecErrors {
    pub text: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The largest spec file sluice reads: specs are hand-written and a few kilobytes, and a
/// limit keeps a runaway file from taking the memory and time of a whole machine.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// Parse and compile spec text. A UTF-8 byte order mark is skipped; a NUL byte is an error
/// at its position (YAML cannot hold one).
pub fn compile_text(file: &str, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(at) = text.find('\0') {
        let line = text[..at].matches('\n').count() + 1;
        let column = text[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        return Err(vec![Diagnostic::new(
            file,
            diagnostic::Pos { line, column },
            "",
            "the file contains a NUL byte, which YAML does not allow; is it a binary file, or saved as UTF-16?",
        )]);
    }
    let shape = match parse::parse(file, text) {
        Ok(parsed) => return compile::compile(file, text, &parsed),
        Err(shape) => shape,
    };
    // One pass: the meaning of the parts that did parse is checked too.
    let Some((parsed, cuts)) = parse::without_shape_errors(file, text, &shape) else {
        return Err(shape);
    };
    let semantic = match compile::compile(file, text, &parsed) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    };
    // What the compile pass says of a part that was left out, or of the mapping that
    // lost it ("needs a `type`"), follows from leaving it out, not from the spec.
    let left_out = |path: &str| {
        cuts.iter().any(|cut| {
            let parent = cut.rsplit_once('.').map_or("", |(p, _)| p);
            path.starts_with(cut.as_str()) || path == parent
        })
    };
    let mut all = shape;
    for d in semantic {
        if !left_out(&d.path)
            && !all
                .iter()
                .any(|s| s.line == d.line && s.column == d.column && s.message == d.message)
        {
            all.push(d);
        }
    }
    all.sort_by_key(|d| (d.line, d.column));
    Err(all)
}

/// Read, parse and compile a spec file.
pub fn compile_file(path: &str) -> Result<Pipeline, SpecErrors> {
    compile_file_with_text(path).map(|(p, _)| p)
}

/// Read, parse and compile a spec file, and keep its text (for a command that edits it).
pub fn compile_file_with_text(path: &str) -> Result<(Pipeline, String), SpecErrors> {
    let whole = |message: String| SpecErrors {
        text: None,
        diagnostics: vec![Diagnostic::new(
            path,
            diagnostic::Pos { line: 1, column: 1 },
            "",
            message,
        )],
    };
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > MAX_SPEC_BYTES {
        return Err(whole(format!(
            "the spec is {size} bytes; sluice reads specs of at most {MAX_SPEC_BYTES} bytes (1 MiB). Is this the right file?"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| SpecErrors {
        text: None,
        diagnostics: vec![Diagnostic::new(
            path,
            diagnostic::Pos { line: 1, column: 1 },
            "",
            format!("cannot read the spec: {e}"),
        )],
    })?;
    match compile_text(path, &text) {
        Ok(p) => Ok((p, text)),
        Err(diagnostics) => Err(SpecErrors {
            text: Some(text),
            diagnostics,
        }),
    }
}
