//! The command line: argument parsing, output formats and exit codes. Every command's
//! work lives in the library; this file only wires it to stdin/stdout and exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::spec::{self, Diagnostic};

/// Exit codes, as documented in the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The pipeline or the validation failed.
    pub const FAILED: u8 = 1;
    /// Bad usage (unknown flag, missing argument).
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Declarative REST API → staging → PostgreSQL pipelines from one YAML spec"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check spec files offline (no environment, secrets or network needed).
    Validate {
        /// Spec files to check.
        #[arg(required = true)]
        files: Vec<String>,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the JSON Schema of the spec language.
    Schema,
    /// Print the PostgreSQL DDL a spec implies.
    Ddl {
        /// The spec file.
        spec: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `file:line:col: error: …` with the source line and a caret.
    Human,
    /// One JSON object per diagnostic, one per line.
    Json,
    /// GitHub Actions `::error` annotations.
    Github,
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    ExitCode::from(match cli.command {
        Command::Validate { files, format } => validate(&files, format),
        Command::Schema => {
            print!("{}", spec::schema_text());
            exit::OK
        }
        Command::Ddl { spec } => match load_or_report(&spec) {
            Some(p) => {
                print!("{}", crate::load::ddl::ddl(&p));
                exit::OK
            }
            None => exit::FAILED,
        },
    })
}

/// Load a spec, printing its diagnostics to stderr when it is invalid.
fn load_or_report(path: &str) -> Option<spec::Pipeline> {
    match spec::load_file(path) {
        Ok(p) => Some(p),
        Err(e) => {
            let mut err = std::io::stderr().lock();
            for d in &e.diagnostics {
                let _ = write!(err, "{}", d.render_human(e.text.as_deref()));
            }
            let _ = writeln!(
                err,
                "error: {path} is not a valid spec ({} problem{})",
                e.diagnostics.len(),
                plural(e.diagnostics.len())
            );
            None
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn validate(files: &[String], format: Format) -> u8 {
    let mut out = std::io::stdout().lock();
    let mut problems = 0;
    for file in files {
        let (text, diagnostics): (Option<String>, Vec<Diagnostic>) = match spec::load_file(file) {
            Ok(_) => (None, Vec::new()),
            Err(e) => (e.text, e.diagnostics),
        };
        problems += diagnostics.len();
        for d in &diagnostics {
            let line = match format {
                Format::Human => d.render_human(text.as_deref()),
                Format::Json => d.render_json() + "\n",
                Format::Github => d.render_github() + "\n",
            };
            let _ = out.write_all(line.as_bytes());
        }
        if format == Format::Human && diagnostics.is_empty() {
            let _ = writeln!(out, "{file}: ok");
        }
    }
    if format == Format::Human && problems > 0 {
        let _ = writeln!(
            out,
            "{problems} problem{} in {} file{}",
            plural(problems),
            files.len(),
            plural(files.len())
        );
    }
    if problems > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}
