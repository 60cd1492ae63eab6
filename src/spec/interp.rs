//! `${VAR}` and `${VAR:-default}` in the string fields documented as interpolated.
//! Templates are parsed (and their syntax checked) when a spec is compiled, and resolved
//! from the environment only when a pipeline runs.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var { name: String, default: Option<String> },
}

/// A parsed interpolated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interp {
    raw: String,
    parts: Vec<Part>,
}

/// An environment variable a template needs and the environment lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{0}` is not set")]
pub struct MissingVar(pub String);

impl Interp {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = raw;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                // `$$` is a literal dollar sign.
                lit.push('$');
                rest = stripped;
                continue;
            }
            let Some(body_start) = after.strip_prefix('{') else {
                lit.push('$');
                rest = after;
                continue;
            };
            let end = body_start
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{raw}`"))?;
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d.to_string())),
                None => (body, None),
            };
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{body}}}` is not a valid variable reference; write `${{NAME}}` or `${{NAME:-default}}`"
                ));
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var {
                name: name.to_string(),
                default,
            });
            rest = &body_start[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Interp {
            raw: raw.to_string(),
            parts,
        })
    }

    /// The template as written in the spec.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The names of the environment variables the template reads.
    pub fn vars(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var { name, .. } => Some(name.as_str()),
                Part::Lit(_) => None,
            })
            .collect()
    }

    /// The defaults written in the template (`${NAME:-default}`), non-empty ones.
    pub fn defaults(&self) -> Vec<(&str, &str)> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var { name, default: Some(d) } if !d.is_empty() => Some((name.as_str(), d.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The variables `lookup` has no value for and the template gives no default: what
    /// [`Interp::resolve_with`] would fail on, all of them.
    pub fn missing(&self, lookup: impl Fn(&str) -> Option<String>) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var { name, default: None } if lookup(name).is_none() => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the template reads the environment at all.
    /// The variable's name when the whole template is one reference (`${NAME}` or
    /// `${NAME:-default}`), which a deployment can set to anything.
    pub fn sole_var(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Var { name, .. }] => Some(name),
            _ => None,
        }
    }

    pub fn has_vars(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var { .. }))
    }

    /// `text` written so that it reads back as itself, not as a template: `$` doubled.
    pub fn escape(text: &str) -> String {
        text.replace('$', "$$")
    }

    /// The value with every variable at its default, when every variable has one: what the
    /// spec means without any environment (used for offline checks and diagrams).
    pub fn offline(&self) -> Option<String> {
        self.resolve_with(|_| None).ok()
    }

    /// Resolve with `lookup` (the process environment, in [`crate::resolve`]).
    pub fn resolve_with(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, MissingVar> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, default } => match (lookup(name), default) {
                    (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                    (_, Some(d)) => out.push_str(d),
                    (_, None) => return Err(MissingVar(name.clone())),
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Interp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn resolves_variables_and_defaults() {
        let t = Interp::parse("https://${HOST}/${PATH:-api}").unwrap();
        assert_eq!(t.resolve_with(env).unwrap(), "https://example.org/api");
        assert_eq!(t.offline(), None);
        let t = Interp::parse("${EMPTY:-fallback}").unwrap();
        assert_eq!(t.resolve_with(env).unwrap(), "fallback");
        assert_eq!(t.offline().as_deref(), Some("fallback"));
    }

    #[test]
    fn every_missing_variable_without_a_default_is_listed() {
        let t = Interp::parse("${TOKEN}/${HOST}/${PORT:-80}/${USER}").unwrap();
        assert_eq!(t.missing(env), ["TOKEN", "USER"]);
    }

    #[test]
    fn a_missing_variable_is_named() {
        let t = Interp::parse("Bearer ${TOKEN}").unwrap();
        assert_eq!(t.resolve_with(env), Err(MissingVar("TOKEN".into())));
    }

    #[test]
    fn dollars_and_bad_references() {
        assert_eq!(Interp::parse("a$$b$c").unwrap().offline().as_deref(), Some("a$b$c"));
        assert!(Interp::parse("${NOPE").is_err());
        assert!(Interp::parse("${1X}").is_err());
        assert!(Interp::parse("${A-B}").is_err());
    }
}
