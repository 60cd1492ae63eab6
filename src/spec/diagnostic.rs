//! Spec problems as data: file, line, column, field path and message. Rendering them
//! for people (`human`), machines (`json`) or GitHub Actions (`github`) is a choice of
//! printer, not of checker.

use serde::Serialize;

/// Line and column (both 1-based) of a node in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path inside the spec, for example `resources[0].table.columns[2].type`.
    pub path: String,
    pub message: String,
    /// `error` (the spec is refused) or `warning` (it is taken, but likely not meant so).
    pub severity: Severity,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl Diagnostic {
    pub fn new(file: &str, pos: Pos, path: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// A warning: the spec is valid, but probably does not do what its author means.
    pub fn warning(file: &str, pos: Pos, path: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::new(file, pos, path, message)
        }
    }

    /// `file:line:column: error: path: message`, then the source line and a caret.
    pub fn render_human(&self, source: Option<&str>) -> String {
        let mut out = format!(
            "{}:{}:{}: {}: ",
            self.file,
            self.line,
            self.column,
            self.severity.name()
        );
        if !self.path.is_empty() {
            out.push_str(&format!("{}: ", self.path));
        }
        out.push_str(&self.message);
        out.push('\n');
        if let Some(line) = source.and_then(|s| s.lines().nth(self.line.saturating_sub(1))) {
            let gutter = self.line.to_string();
            out.push_str(&format!("{} |\n", " ".repeat(gutter.len())));
            out.push_str(&format!("{gutter} | {line}\n"));
            let pad: String = line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{} | {pad}^\n", " ".repeat(gutter.len())));
        }
        out
    }

    /// A GitHub Actions workflow command that annotates the line in a pull request.
    pub fn render_github(&self) -> String {
        let message = if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        };
        format!(
            "::{} file={},line={},col={},title=sluice validate::{}",
            self.severity.name(),
            escape_property(&self.file),
            self.line,
            self.column,
            escape_data(&message)
        )
    }

    pub fn render_json(&self) -> String {
        serde_json::to_string(self).expect("diagnostic serializes")
    }
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The closest candidate to a misspelt word, if one is close enough to be a likely typo,
/// or else the one candidate the word abbreviates (`int` → `integer`, `link` →
/// `link_header`).
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let close = candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    close.or_else(|| {
        let word = word.to_ascii_lowercase();
        let mut prefixed = candidates
            .iter()
            .filter(|c| word.len() >= 3 && c.starts_with(word.as_str()));
        match (prefixed.next(), prefixed.next()) {
            (Some(only), None) => Some(*only),
            _ => None,
        }
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviations_are_recognised() {
        assert_eq!(did_you_mean("int", ["text", "integer", "bigint"]), Some("integer"));
        assert_eq!(
            did_you_mean("link", ["next_url", "link_header", "none"]),
            Some("link_header")
        );
        assert_eq!(did_you_mean("ti", ["time", "timestamptz"]), None);
        assert_eq!(did_you_mean("tim", ["time_a", "time_b"]), None, "ambiguous");
    }

    #[test]
    fn suggests_close_words_only() {
        let keys = ["columns", "primary_key", "write"];
        assert_eq!(did_you_mean("colums", keys), Some("columns"));
        assert_eq!(did_you_mean("primarykey", keys), Some("primary_key"));
        assert_eq!(did_you_mean("zebra", keys), None);
    }

    #[test]
    fn human_rendering_points_a_caret_at_the_column() {
        let d = Diagnostic::new("p.yaml", Pos { line: 2, column: 7 }, "b", "bad");
        let text = d.render_human(Some("a: 1\nb:    x\n"));
        assert_eq!(text, "p.yaml:2:7: error: b: bad\n  |\n2 | b:    x\n  |       ^\n");
    }

    #[test]
    fn github_rendering_escapes_properties() {
        let d = Diagnostic::new("a,b.yaml", Pos { line: 3, column: 1 }, "", "50% off\nnow");
        assert_eq!(
            d.render_github(),
            "::error file=a%2Cb.yaml,line=3,col=1,title=sluice validate::50%25 off%0Anow"
        );
    }
}
