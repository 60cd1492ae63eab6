//! The compile pass: raw spec → validated [`Pipeline`]. Pure and offline: no
//! environment, no network. Every problem is collected, each at the line and column of
//! the field it is about, so one `sluice validate` run shows them all.
//!
//! One file per part of the spec, in the spec's order: `runtime`, `source`, `paginate`,
//! `stores` (staging and warehouse), `resource`, `table`; then `checks` across resources.
//! This file holds the context they share and the helpers for URLs, templates and maps.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::spec::diagnostic::Diagnostic;
use crate::spec::ident::check_identifier;
use crate::spec::interp::Interp;
use crate::spec::jsonpath::JsonPath;
use crate::spec::parse::Parsed;
use crate::spec::pipeline::{self as p, Pipeline};
use crate::spec::tree::Positions;

mod auth;
mod checks;
mod job;
mod paginate;
mod resource;
mod runtime;
mod source;
mod stores;
mod table;
mod target;

use checks::{check_for_each, check_names_unique, check_references};
use resource::compile_resource;
use runtime::{check_schedule, compile_runtime};
use source::compile_source;
use stores::{compile_staging, compile_warehouse};

/// Names PostgreSQL gives every table's system columns.
const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// What the compile pass carries: where fields are, and what it found so far.
struct Ctx<'a> {
    file: &'a str,
    positions: &'a Positions,
    diagnostics: Vec<Diagnostic>,
    /// Every table that compiled, with its field path, for the cross-table checks.
    tables: Vec<(String, p::Table)>,
    /// While a resource's own table compiles: whether the resource has `for_each`.
    child_resource: bool,
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    /// An error about the value at `path`.
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.positions.value(path);
        self.diagnostics.push(Diagnostic::new(self.file, pos, path, message));
    }

    /// A warning about the value at `path`.
    fn warn(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.positions.value(path);
        self.warnings.push(Diagnostic::warning(self.file, pos, path, message));
    }

    /// An error about the key at `path` (for a field that should not be there).
    fn error_at_key(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.positions.key(path);
        self.diagnostics.push(Diagnostic::new(self.file, pos, path, message));
    }

    fn interp(&mut self, path: &str, raw: &str) -> Option<Interp> {
        match Interp::parse(raw) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// A secret must come from the environment, never be written in the spec.
    fn secret(&mut self, path: &str, raw: &str) -> Option<Interp> {
        let t = self.interp(path, raw)?;
        // An empty value holds no secret (Stripe: the key is the user, the password empty).
        if !t.has_vars() && !raw.is_empty() {
            self.error(
                path,
                "secrets must come from the environment: write `${SOME_VARIABLE}` instead of the value",
            );
            return None;
        }
        // `${TOKEN:-sk_live_…}`: the default is the secret, written in the spec.
        if let Some((name, _)) = t.defaults().first() {
            self.error(
                path,
                format!("`${{{name}:-…}}` writes a default into the spec, and the default of a secret is a secret; drop the default (`${{{name}}}`) and set the variable"),
            );
            return None;
        }
        Some(t)
    }

    fn jsonpath(&mut self, path: &str, text: &str) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    fn ident(&mut self, path: &str, name: &str) -> bool {
        match check_identifier(name) {
            Ok(()) => true,
            Err(e) => {
                self.error(path, format!("invalid name: {e}"));
                false
            }
        }
    }
}

/// Compile a parsed spec. `text` is the file's content (hashed into the pipeline).
pub(crate) fn compile(file: &str, text: &str, parsed: &Parsed) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut cx = Ctx {
        file,
        positions: &parsed.positions,
        diagnostics: Vec::new(),
        tables: Vec::new(),
        child_resource: false,
        warnings: Vec::new(),
    };
    let spec = &parsed.spec;
    if spec.version != 1 {
        cx.error(
            "version",
            format!("unsupported spec version {}; this sluice reads version 1", spec.version),
        );
    }
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 63
        && spec.name.starts_with(|c: char| c.is_ascii_lowercase())
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        cx.error(
            "name",
            format!(
                "invalid pipeline name `{}`: use lowercase letters, digits, `_` and `-`, starting with a letter",
                spec.name
            ),
        );
    }
    let source = compile_source(&mut cx, &spec.source);
    let staging = compile_staging(&mut cx, &spec.staging);
    let warehouse = compile_warehouse(&mut cx, &spec.warehouse);
    if let Some(Err(e)) = spec
        .runtime
        .as_ref()
        .and_then(|r| r.schedule.as_deref())
        .map(check_schedule)
    {
        cx.error("runtime.schedule", e);
    }
    let runtime = spec.runtime.as_ref().map(|r| compile_runtime(&mut cx, r));
    if spec.resources.is_empty() {
        cx.error("resources", "a pipeline needs at least one resource");
    }
    let resources: Vec<Option<p::Resource>> = spec
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| compile_resource(&mut cx, &format!("resources[{i}]"), r))
        .collect();
    check_names_unique(&mut cx, spec);
    check_for_each(&mut cx, spec);
    check_references(&mut cx, spec);
    let source_rules = resource::compile_rules(&mut cx, "source.on_response", &spec.source.on_response);
    let mut all: Vec<p::Resource> = resources.into_iter().flatten().collect();
    for r in &mut all {
        r.on_response.extend(source_rules.iter().cloned());
    }
    if !cx.diagnostics.is_empty() {
        let mut d = cx.diagnostics;
        d.sort_by_key(|d| (d.line, d.column));
        d.dedup();
        return Err(d);
    }
    let (Some(source), Some(staging), Some(warehouse)) = (source, staging, warehouse) else {
        unreachable!("a part that failed to compile reported a diagnostic");
    };
    Ok(Pipeline {
        file: file.to_string(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        spec_hash: hex::encode(Sha256::digest(text.as_bytes())),
        source,
        staging,
        warehouse,
        runtime,
        resources: all,
        warnings: cx.warnings,
    })
}

fn check_url(cx: &mut Ctx, path: &str, t: &Interp) {
    // Only a URL that is fully known offline can be checked here.
    let Some(url) = t.offline() else { return };
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => cx.error(
            path,
            format!(
                "`{url}` must be an http:// or https:// URL with a host, not `{}:`",
                u.scheme()
            ),
        ),
        Err(e) => cx.error(path, format!("`{url}` is not a valid URL: {e}")),
    }
}

/// Every string of a request body is a template: check their syntax now.
fn check_body_templates(cx: &mut Ctx, path: &str, body: &serde_json::Value, allowed: Allowed) {
    match body {
        serde_json::Value::String(s) => {
            cx.interp(path, s);
            check_placeholders(cx, path, s, allowed);
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_body_templates(cx, &format!("{path}[{i}]"), v, allowed);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                check_body_templates(cx, &format!("{path}.{k}"), v, allowed);
            }
        }
        _ => {}
    }
}

/// An HTTP header name: RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn interp_map<V: AsRef<str>>(cx: &mut Ctx, path: &str, map: &BTreeMap<String, V>) -> Option<Vec<(String, Interp)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in map {
        match cx.interp(&format!("{path}.{k}"), v.as_ref()) {
            Some(t) => out.push((k.clone(), t)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Which placeholders a resource may use.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    /// `{parent.…}`: with `for_each: <parent>`.
    parent: bool,
    /// `{item}`: with `for_each: {values}`.
    item: bool,
    /// `{incremental.start}` and `{incremental.end}`: with `incremental`.
    start: bool,
    /// `{job.…}`: in a job's poll and download.
    job: bool,
}

/// Report placeholders the resource cannot fill; whether there was none.
fn check_sources(cx: &mut Ctx, path: &str, found: &[super::placeholder::Placeholder], allowed: Allowed) -> bool {
    use super::placeholder::Source;
    for p in found {
        let problem = match p.source {
            Source::Parent(_) if !allowed.parent => {
                "`{parent.<field>}` placeholders need `for_each: <parent resource>` on the resource"
            }
            Source::Item if !allowed.item => "`{item}` needs `for_each: {values: [...]}` on the resource",
            Source::Start if !allowed.start => "`{incremental.start}` needs `incremental` on the resource",
            Source::End if !allowed.start => "`{incremental.end}` needs `incremental` on the resource",
            Source::Job(_) if !allowed.job => {
                "`{job.<field>}` is the answer of `job.create`, so it goes only in `job.poll` and `job.download`"
            }
            _ => continue,
        };
        cx.error(path, problem);
        return false;
    }
    true
}

/// A parameter or body string: its placeholders are well formed and the resource can
/// fill them.
fn check_placeholders(cx: &mut Ctx, path: &str, text: &str, allowed: Allowed) {
    use super::placeholder::{scan, Scan};
    match scan(text, Scan::Text) {
        Err(e) => cx.error(path, e),
        Ok(found) => {
            check_sources(cx, path, &found, allowed);
        }
    }
}
