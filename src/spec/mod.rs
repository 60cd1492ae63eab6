//! The spec language: parse ([`load`]), check ([`compile`]) and the validated
//! [`Pipeline`] everything else reads. Offline throughout: validating a spec needs no
//! environment variable, secret or network.

pub mod compile;
pub mod diagnostic;
pub mod ident;
pub mod interp;
pub mod jsonpath;
pub mod load;
pub mod model;
pub mod pipeline;
pub mod reference;
pub mod units;

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

/// Parse and compile spec text.
pub fn compile_text(file: &str, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let loaded = load::load(file, text)?;
    compile::compile(file, text, &loaded)
}

/// Read, parse and compile a spec file.
pub fn load_file(path: &str) -> Result<Pipeline, SpecErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecErrors {
        text: None,
        diagnostics: vec![Diagnostic::new(
            path,
            load::Pos { line: 1, column: 1 },
            "",
            format!("cannot read the spec: {e}"),
        )],
    })?;
    compile_text(path, &text).map_err(|diagnostics| SpecErrors {
        text: Some(text),
        diagnostics,
    })
}
