//! The command line: argument parsing, output formats and exit codes. Every command's
//! work lives in the library; this file only wires it to stdin/stdout and exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::spec::{self, Diagnostic};

mod test_report;

/// Exit codes, as documented in the README and docs/commands.md.
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
    /// Only print warnings and errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Format of the log lines on stderr.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiagramFormat {
    /// draw.io / diagrams.net XML.
    Drawio,
    /// SVG picture.
    Svg,
    /// PNG picture.
    Png,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiagramPages {
    /// The architecture page.
    Pipeline,
    /// The ER page.
    Tables,
    /// Both.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SchemaFormat {
    /// JSON Schema.
    Json,
    /// Markdown reference tables.
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InitAuth {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A key in a header (or query parameter, with --key-in query).
    #[value(name = "api_key")]
    ApiKey,
    /// HTTP basic authentication.
    Basic,
    /// OAuth 2.0 client credentials: a token from --token-url, with `<NAME>_CLIENT_ID`
    /// and `<NAME>_CLIENT_SECRET`.
    Oauth2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyIn {
    /// In a request header.
    Header,
    /// In a query parameter.
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a spec from an API's first pages: the records, the pagination (followed two
    /// pages to confirm), typed columns, keys, references and nested tables.
    Init {
        #[command(flatten)]
        args: Box<InitArgs>,
        /// The spec to write (stdout when absent); an existing file needs --force.
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// Add the URLs as new resources of this spec (written back to it, or to -o).
        #[arg(long, value_name = "SPEC")]
        append: Option<String>,
        /// Overwrite the file given with -o.
        #[arg(long)]
        force: bool,
        /// Also record the new spec's first pages (as `sluice record --pages 2`) into
        /// tests/recordings/<pipeline>, so that it comes with its first `sluice test`.
        #[arg(long, requires = "output")]
        record: bool,
    },
    /// Check spec files offline (no environment, secrets or network needed).
    Validate {
        /// Spec files to check.
        #[arg(required = true)]
        files: Vec<String>,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the JSON Schema of the spec language (or its Markdown reference).
    Schema {
        /// `json` (the schema editors use) or `markdown` (docs/spec-reference.md).
        #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
        format: SchemaFormat,
    },
    /// Print the DDL a spec implies, for PostgreSQL or SQLite.
    Ddl {
        /// The spec file.
        spec: String,
        /// The SQL dialect; by default the one of the warehouse URL (`sqlite://…` or
        /// PostgreSQL) as the environment resolves it, else PostgreSQL.
        #[arg(long, value_enum)]
        dialect: Option<crate::load::ddl::Dialect>,
    },
    /// Validate specs and check, reading no records, that each can run here: every
    /// environment variable set, the warehouse reachable with a schema it can load into,
    /// the staging location writable (and with --api, the API answering).
    Check {
        /// Spec files to check.
        #[arg(required = true)]
        specs: Vec<String>,
        /// Also make one request to the first resource of each spec (URL and auth).
        #[arg(long)]
        api: bool,
    },
    /// Extract and load: the whole pipeline.
    Run {
        #[command(flatten)]
        target: Target,
        /// Fetch and map, print the rows that would be loaded (JSON Lines), write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Extract: read the API and stage the raw records (the "ingest Lambda").
    Extract {
        #[command(flatten)]
        target: Target,
        /// Fetch and print the records (JSON Lines) instead of staging them; one page per
        /// resource unless --limit is given.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read a few pages of each resource from the real API and write every exchange (no
    /// secret) into a recording folder, for `sluice test`.
    Record {
        /// The spec file.
        spec: String,
        /// Only this resource (repeatable; a `for_each` child brings its parent).
        #[arg(long = "resource", value_name = "NAME")]
        resources: Vec<String>,
        /// Pages per resource (and per parent of a `for_each` resource).
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        pages: u64,
        /// Parents (or `for_each` values) whose requests a `for_each` resource makes.
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        parents: u64,
        /// The recording folder (default: tests/recordings/<pipeline>); replaced.
        #[arg(short, long, value_name = "DIR")]
        output: Option<String>,
        /// Record the run after the one recorded in DIR: that one is replayed first, and
        /// this run reads from the incremental state it left (needs --output).
        #[arg(long, value_name = "DIR", requires = "output")]
        after: Option<String>,
    },
    /// Run specs end to end offline against their recordings (a loopback server answers
    /// as the API did; staging and a SQLite warehouse in a scratch folder), with their
    /// expectations; exit 1 on any difference.
    Test {
        /// Spec files to test.
        #[arg(required = true)]
        specs: Vec<String>,
        /// The folder of the recordings, one folder per pipeline (or one recording's
        /// folder, for one spec).
        #[arg(long, value_name = "DIR", default_value = "tests/recordings")]
        recordings: String,
        /// Output format of the report.
        #[arg(long, value_enum, default_value_t = TestFormat::Human)]
        format: TestFormat,
    },
    /// Load a staged run into PostgreSQL (the "load Lambda"); the latest run by default.
    Load {
        /// The spec file.
        spec: String,
        /// The run id to load (see `sluice extract` output or the manifests).
        #[arg(long, value_name = "ID", conflicts_with = "latest")]
        run: Option<String>,
        /// Load the latest complete run (the default).
        #[arg(long)]
        latest: bool,
        /// Load a run again even though the ledger says it was loaded.
        #[arg(long)]
        force: bool,
    },
    /// Show the incremental state (the highest cursor loaded per resource), or reset it.
    State {
        /// The spec file.
        spec: String,
        /// Forget the state: the next run starts at `initial`.
        #[arg(long)]
        reset: bool,
        /// With --reset: only this resource (repeatable).
        #[arg(long = "resource", value_name = "NAME", requires = "reset")]
        resources: Vec<String>,
    },
    /// Remove the staged objects of incomplete runs (failed or killed extractions).
    Gc {
        /// The spec file.
        spec: String,
        /// Only runs that started (a checkpointed run: last saved) longer ago than this
        /// (`30m`, `12h`, `7d`).
        #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_age)]
        older_than: std::time::Duration,
    },
    /// Draw specs: an architecture page and an ER page, as draw.io, SVG or PNG.
    Diagram {
        /// Spec files; each becomes one lane.
        #[arg(required = true)]
        specs: Vec<String>,
        /// Output file (stdout when absent); its extension chooses the format.
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// Output format (default: from the extension of -o, else drawio).
        #[arg(long, value_enum)]
        format: Option<DiagramFormat>,
        /// Which pages to draw.
        #[arg(long, value_enum, default_value_t = DiagramPages::All)]
        page: DiagramPages,
        /// Do not write: exit 1 when the file given with -o is out of date.
        #[arg(long, requires = "output")]
        check: bool,
    },
    /// Write the zip an AWS Lambda function runs from: `bootstrap` (this binary, or the
    /// one given) and the specs.
    Package {
        /// Spec files to bundle.
        #[arg(required = true)]
        specs: Vec<String>,
        /// The zip to write (default: `sluice-lambda-<sha256 12>.zip` here, named by its
        /// content, so that each new package is a new `CodeKey`).
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// A file to put beside the specs, in `pipelines/` (for example the RDS CA bundle
        /// for `sslrootcert=/var/task/pipelines/global-bundle.pem`); repeatable.
        #[arg(long, value_name = "FILE")]
        include: Vec<String>,
        /// The sluice binary to bundle as `bootstrap` (default: this one). It must run on
        /// Amazon Linux 2023: glibc 2.34 at most (`cargo zigbuild --target
        /// x86_64-unknown-linux-gnu.2.34`) or static (musl).
        #[arg(long, value_name = "FILE")]
        bootstrap: Option<String>,
    },
    /// Write the infrastructure that runs specs in the cloud.
    Deploy {
        #[command(subcommand)]
        target: DeployTarget,
    },
    /// The AWS Lambda handler: the `bootstrap` of a `provided.al2023` function runs this.
    Lambda,
}

#[derive(Debug, Subcommand)]
enum DeployTarget {
    /// A CloudFormation template: staging bucket, extract and load functions, schedules,
    /// the manifest trigger, IAM, dead-letter queue and alarms.
    Aws {
        /// Spec files to deploy (the ones `sluice package` bundled).
        #[arg(required = true)]
        specs: Vec<String>,
        /// The template to write (stdout when absent).
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// The package the functions will run (what `sluice package` wrote): it must
        /// bundle exactly these specs; its name becomes the default `CodeKey` and its
        /// bootstrap's architecture the default `Architecture`.
        #[arg(long, value_name = "ZIP")]
        package: Option<String>,
    },
}

/// What `extract` and `run` work on.
#[derive(Debug, clap::Args)]
struct Target {
    /// The spec file.
    spec: String,
    /// Only this resource (repeatable).
    #[arg(long = "resource", value_name = "NAME")]
    resources: Vec<String>,
    /// Stop each resource after N records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Keep what a failed run staged (normally removed), to look into it.
    #[arg(long)]
    keep_failed: bool,
    /// Incremental resources read everything again, from their `initial`.
    #[arg(long)]
    full_refresh: bool,
    /// Go on with a run that stopped before its end (a signal, a deadline, a kill) from
    /// its checkpoint: this run, or the newest checkpointed one. Put it after the spec.
    #[arg(long, value_name = "RUN_ID", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["resources", "limit", "full_refresh"])]
    resume: Option<String>,
}

impl Target {
    /// The compiled spec (its problems printed when invalid) and the extract options.
    fn open(self) -> Option<(spec::Pipeline, crate::run::ExtractOptions)> {
        let p = compile_or_report(&self.spec)?;
        Some((
            p,
            crate::run::ExtractOptions {
                resources: self.resources,
                limit: self.limit,
                keep_failed: self.keep_failed,
                full_refresh: self.full_refresh,
                resume: self.resume.map(|id| Some(id).filter(|id| !id.is_empty())),
                ..Default::default()
            },
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TestFormat {
    /// A line per spec, then what failed.
    Human,
    /// One JSON object per spec, one per line.
    Json,
    /// GitHub Actions `::error` annotations (and the human lines).
    Github,
    /// A JUnit XML report (one test suite per spec, a test case per resource).
    Junit,
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
    // Lambda starts a custom runtime's `bootstrap` with no arguments: that is `lambda`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let as_bootstrap = args.len() == 1
        && (args[0]
            .to_str()
            .is_some_and(|a| std::path::Path::new(a).ends_with("bootstrap"))
            || std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some());
    let parsed = match as_bootstrap {
        true => Cli::try_parse_from([args[0].clone(), "lambda".into()]),
        false => Cli::try_parse_from(args),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    // On a terminal, extraction and loading show progress bars, with the log lines above.
    let show_progress = !cli.quiet
        && cli.log_format == LogFormat::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && matches!(
            cli.command,
            Command::Extract { dry_run: false, .. } | Command::Run { dry_run: false, .. }
        );
    if matches!(cli.command, Command::Lambda) {
        init_lambda_logging(cli.quiet);
    } else {
        init_logging(cli.quiet, cli.log_format, show_progress);
    }
    ExitCode::from(match cli.command {
        Command::Init {
            args,
            output,
            append,
            force,
            record: also_record,
        } => init_then_record(args, output, append, force, also_record),
        Command::Validate { files, format } => validate(&files, format),
        Command::Schema { format } => {
            match format {
                SchemaFormat::Json => print!("{}", spec::schema_text()),
                SchemaFormat::Markdown => print!("{}", spec::reference::markdown()),
            }
            exit::OK
        }
        Command::Ddl { spec, dialect } => match compile_or_report(&spec) {
            Some(p) => {
                let dialect = dialect.unwrap_or_else(|| {
                    let url = p.warehouse().url.resolve_with(crate::resolve::var);
                    url.map(|u| crate::load::dialect_of(&u))
                        .unwrap_or(crate::load::ddl::Dialect::Postgres)
                });
                print!("{}", crate::load::ddl::ddl(&p, dialect));
                exit::OK
            }
            None => exit::FAILED,
        },
        Command::Extract { target, dry_run } => {
            let Some((p, opts)) = target.open() else {
                return ExitCode::from(exit::FAILED);
            };
            block_on(extract(&p, &opts, dry_run))
        }
        Command::Load {
            spec,
            run,
            latest: _,
            force,
        } => {
            let Some(p) = compile_or_report(&spec) else {
                return ExitCode::from(exit::FAILED);
            };
            let which = run
                .map(crate::run::RunSelector::Id)
                .unwrap_or(crate::run::RunSelector::Latest);
            block_on(load(&p, which, force))
        }
        Command::Diagram {
            specs,
            output,
            format,
            page,
            check,
        } => diagram(&specs, output.as_deref(), format, page, check),
        Command::Check { specs, api } => block_on(check(&specs, api)),
        Command::Gc { spec, older_than } => {
            let Some(p) = compile_or_report(&spec) else {
                return ExitCode::from(exit::FAILED);
            };
            block_on(gc(&p, older_than))
        }
        Command::State { spec, reset, resources } => {
            let Some(p) = compile_or_report(&spec) else {
                return ExitCode::from(exit::FAILED);
            };
            block_on(state(&p, reset, &resources))
        }
        Command::Package {
            specs,
            output,
            include,
            bootstrap,
        } => package(&specs, &include, output.as_deref(), bootstrap.as_deref()),
        Command::Deploy {
            target: DeployTarget::Aws { specs, output, package },
        } => deploy_aws(&specs, output.as_deref(), package.as_deref()),
        Command::Lambda => lambda(),
        Command::Record {
            spec,
            resources,
            pages,
            parents,
            output,
            after,
        } => match compile_or_report(&spec) {
            Some(p) => {
                let dir = output.map_or_else(|| crate::run::default_dir(&p), std::path::PathBuf::from);
                block_on(record(
                    &p,
                    &crate::run::RecordOptions {
                        resources,
                        pages,
                        parents,
                        dir,
                        after: after.map(std::path::PathBuf::from),
                    },
                ))
            }
            None => exit::FAILED,
        },
        Command::Test {
            specs,
            recordings,
            format,
        } => block_on(test_report::test(&specs, &recordings, format)),
        Command::Run { target, dry_run } => {
            let Some((p, opts)) = target.open() else {
                return ExitCode::from(exit::FAILED);
            };
            block_on(run(&p, &opts, dry_run))
        }
    })
}

/// Compile every spec, printing the problems of the invalid ones; all or nothing.
fn load_all(specs: &[String]) -> Option<Vec<spec::Pipeline>> {
    let loaded: Vec<Option<spec::Pipeline>> = specs.iter().map(|s| compile_or_report(s)).collect();
    loaded.into_iter().collect()
}

fn package(specs: &[String], include: &[String], output: Option<&str>, bootstrap: Option<&str>) -> u8 {
    let Some(pipelines) = load_all(specs) else {
        return exit::FAILED;
    };
    if let Err(e) = crate::aws::plan(&pipelines) {
        eprintln!("error: {e}");
        return exit::FAILED;
    }
    let bootstrap = match bootstrap {
        Some(b) => std::path::PathBuf::from(b),
        None => match std::env::current_exe() {
            Ok(me) => me,
            Err(e) => {
                eprintln!("error: cannot find this binary ({e}); give one with --bootstrap");
                return exit::FAILED;
            }
        },
    };
    match crate::aws::package::package(specs, include, &bootstrap, output.map(std::path::Path::new)) {
        Ok(p) => {
            println!(
                "wrote {} ({} bytes): bootstrap ({}, needs glibc {}, {} bytes) and {}",
                p.output.display(),
                p.bytes,
                p.bootstrap.architecture,
                p.bootstrap.glibc_text(),
                p.bootstrap_bytes,
                p.specs
                    .iter()
                    .map(|s| format!("pipelines/{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let key = p
                .output
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!("sha256 {} (Lambda's CodeSha256: {})", p.sha256, p.code_sha256);
            println!("upload it and deploy with --parameter-overrides CodeKey=<prefix/>{key}");
            if p.bootstrap.architecture != "x86_64" {
                println!(
                    "deploy it with --parameter-overrides Architecture={}",
                    p.bootstrap.architecture
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
    }
}

fn deploy_aws(specs: &[String], output: Option<&str>, package: Option<&str>) -> u8 {
    let Some(pipelines) = load_all(specs) else {
        return exit::FAILED;
    };
    let mut plan = match crate::aws::plan(&pipelines) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    if let Some(zip) = package {
        let contents = match crate::aws::package::contents(std::path::Path::new(zip)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        };
        let differences = crate::aws::package::differences(&contents, specs);
        if !differences.is_empty() {
            eprintln!(
                "error: {zip} does not run these specs: {}; run `sluice package` with them again",
                differences.join("; ")
            );
            return exit::FAILED;
        }
        plan.package = Some((contents.name, contents.bootstrap.architecture));
    }
    for p in pipelines.iter().filter(|p| {
        p.runtime()
            .is_none_or(|r| r.target != spec::pipeline::RuntimeTarget::AwsLambda)
    }) {
        tracing::warn!(
            pipeline = p.name(),
            "the spec does not say `runtime.target: aws_lambda`; its diagram will not show the deployment"
        );
    }
    let text = crate::aws::template::render(&plan);
    match output {
        None => {
            print!("{text}");
            exit::OK
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                tracing::info!(file = path, pipelines = plan.pipelines.len(), "template written");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: cannot write {path}: {e}");
                exit::FAILED
            }
        },
    }
}

fn lambda() -> u8 {
    block_on(async {
        match crate::aws::lambda::serve().await {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILED
            }
        }
    })
}

async fn check(specs: &[String], api: bool) -> u8 {
    let mut code = exit::OK;
    let mut checked: Vec<spec::Pipeline> = Vec::new();
    for file in specs {
        let Some(p) = compile_or_report(file) else {
            code = exit::FAILED;
            continue;
        };
        if let Some(why) = checked.iter().find_map(|q| crate::stage::shared_staging(q, &p)) {
            eprintln!("error: {file}: {why}");
            code = exit::FAILED;
            continue;
        }
        checked.push(p.clone());
        let secrets = crate::util::Secrets::default();
        match crate::run::check(&p, api, &secrets).await {
            Ok(passed) => println!("{file}: ok ({})", passed.join(", ")),
            Err(e) => code = fail(p.name(), &e, &secrets),
        }
    }
    code
}

/// `init`'s sampling options.
#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The URL of the API's first page; several URLs of one API give one resource each.
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// The pipeline's name (default: from the API's host name).
    #[arg(long, conflicts_with = "append")]
    name: Option<String>,
    /// The resource's name (default: from the records' key or the URL's path).
    #[arg(long)]
    resource: Option<String>,
    /// The API's authentication; the secret is read from the variable the spec names
    /// (`<NAME>_TOKEN`, `<NAME>_API_KEY` or `<NAME>_USERNAME` + `<NAME>_PASSWORD`).
    #[arg(long, value_enum, conflicts_with = "append")]
    auth: Option<InitAuth>,
    /// With `--auth oauth2`: the token endpoint (client credentials grant).
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// The variable holding the token, API key or password instead of the default.
    #[arg(long, value_name = "VAR", requires = "auth")]
    auth_var: Option<String>,
    /// With `--auth api_key`: the header (or query parameter) that carries the key.
    #[arg(long, value_name = "NAME", default_value = "X-API-Key")]
    key_name: String,
    /// With `--auth api_key`: send the key in a `header` or the `query`.
    #[arg(long, value_enum, default_value_t = KeyIn::Header)]
    key_in: KeyIn,
    /// Request the URLs with POST and this JSON body (`@FILE` reads it from a file), for
    /// search endpoints and GraphQL.
    #[arg(long, value_name = "JSON", value_parser = parse_body)]
    body: Option<serde_json::Value>,
    /// A header every request needs, `'Name: value'` (repeatable; a value may be
    /// `${VAR}`, read from the environment); written into the spec's `source.headers`.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header, conflicts_with = "append")]
    headers: Vec<(String, String)>,
    /// Pages to read of each URL, the first included (at least 2 confirm pagination).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pages: u64,
    /// Stop sampling after this much response data.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_size)]
    max_bytes: u64,
    /// Stop sampling after this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    max_time: std::time::Duration,
}

async fn init(args: Box<InitArgs>, output: Option<String>, append: Option<String>, force: bool) -> u8 {
    use crate::init::{AuthKind, Options};
    if let Some(out) = &output {
        if !force && append.as_deref() != Some(out.as_str()) && std::path::Path::new(out).exists() {
            eprintln!("error: {out} exists; give --force to overwrite it");
            return exit::FAILED;
        }
    }
    let appended = match &append {
        Some(file) => match compile_or_report_with_text(file) {
            Some((pipeline, text)) => Some(crate::init::Appended { pipeline, text }),
            None => return exit::FAILED,
        },
        None => None,
    };
    // The command, for the spec's first comment: what was asked, not where it was written.
    let mut command = vec!["sluice init".to_string()];
    let mut given = std::env::args().skip_while(|a| a != "init").skip(1);
    while let Some(a) = given.next() {
        match a.as_str() {
            "-o" | "--output" | "--append" | "--log-format" => {
                given.next();
            }
            "-q" | "--quiet" | "--force" => {}
            _ if a.starts_with("--output=") || a.starts_with("--append=") || a.starts_with("--log-format=") => {}
            _ => command.push(a),
        }
    }
    let command = command.join(" ");
    let schema = output.as_deref().and_then(schema_beside);
    let opts = Options {
        urls: args.urls,
        name: args.name,
        resource: args.resource,
        auth: args.auth.map(|a| match a {
            InitAuth::Bearer => AuthKind::Bearer,
            InitAuth::ApiKey => AuthKind::ApiKey,
            InitAuth::Basic => AuthKind::Basic,
            InitAuth::Oauth2 => AuthKind::OAuth2,
        }),
        token_url: args.token_url,
        auth_var: args.auth_var,
        key_name: args.key_name,
        key_in_query: args.key_in == KeyIn::Query,
        body: args.body,
        headers: args.headers,
        pages: args.pages,
        max_bytes: args.max_bytes,
        max_time: args.max_time,
        append: appended,
        command,
        schema,
    };
    let written = match crate::init::init(&opts).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return match e {
                crate::init::InitError::Usage(_) => exit::USAGE,
                _ => exit::FAILED,
            };
        }
    };
    for r in &written.resources {
        tracing::info!(
            "{}: {} records on {} pages; paginate {}; {} columns{}",
            r.name,
            r.records,
            r.pages,
            r.paginate,
            r.columns,
            match r.nested {
                0 => String::new(),
                n => format!(", {n} nested table{}", if n == 1 { "" } else { "s" }),
            }
        );
    }
    let target = output.or(append);
    match target {
        None => print!("{}", written.text),
        Some(path) => {
            if let Err(e) = crate::util::write_file_atomic(std::path::Path::new(&path), written.text.as_bytes()) {
                eprintln!("error: cannot write {path}: {e}");
                return exit::FAILED;
            }
            tracing::info!(
                "wrote {path} ({} requests, {}); next: sluice run {path}",
                written.requests,
                crate::init::sample::human_bytes(written.bytes)
            );
        }
    }
    exit::OK
}

/// `--body`: JSON text, or `@FILE`.
/// `Name: value`, the name a valid header name.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("`{name}` is not a header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn parse_body(text: &str) -> Result<serde_json::Value, String> {
    let json = match text.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&json).map_err(|e| format!("not JSON: {e}"))
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::spec::units::ByteSize::parse(text).map(|b| b.0)
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::spec::units::Duration::parse(text).map(|d| d.0)
}

/// `30m`, `12h`, `7d`, `2w`: an age for `gc`, at most 100 years.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("`{text}` is not an age like `2w`, `7d`, `12h` or `30m`");
    let (count, unit) = match (text.strip_suffix('w'), text.strip_suffix('d')) {
        (Some(weeks), _) => (weeks, 7 * 86_400u64),
        (_, Some(days)) => (days, 86_400),
        _ => {
            return crate::spec::units::Duration::parse(text)
                .map(|d| d.0)
                .map_err(|e| format!("{e}, or days (`7d`) or weeks (`2w`)"))
        }
    };
    let n: u64 = count.parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(secs) if secs <= 100 * 366 * 86_400 => Ok(std::time::Duration::from_secs(secs)),
        _ => Err(format!("`{text}` is more than 100 years")),
    }
}

async fn gc(p: &spec::Pipeline, older_than: std::time::Duration) -> u8 {
    let secrets = crate::util::Secrets::default();
    match crate::run::gc(p, older_than, &secrets).await {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            for run in &report.runs {
                let _ = writeln!(out, "removed incomplete run {run}");
            }
            for run in &report.skipped_running {
                let _ = writeln!(
                    out,
                    "kept run {run}: its extraction is still running (its marker is fresh)"
                );
            }
            let _ = writeln!(
                out,
                "removed {} object{} of {} incomplete run{} from {}",
                report.objects,
                plural(report.objects as usize),
                report.runs.len(),
                plural(report.runs.len()),
                report.location
            );
            exit::OK
        }
        Err(e) => fail(p.name(), &e, &secrets),
    }
}

async fn state(p: &spec::Pipeline, reset: bool, resources: &[String]) -> u8 {
    let secrets = crate::util::Secrets::default();
    let mut out = std::io::stdout().lock();
    if reset {
        return match crate::run::reset_state(p, resources, &secrets).await {
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "reset {n} incremental state{}; the next run starts at `initial`",
                    plural(n as usize)
                );
                exit::OK
            }
            Err(e) => fail(p.name(), &e, &secrets),
        };
    }
    match crate::run::state(p, &secrets).await {
        Ok(rows) => {
            let _ = writeln!(
                out,
                "{:<24} {:<32} {:<32} {:<24} updated",
                "resource", "saved (highest loaded)", "next start", "run"
            );
            for r in rows {
                let _ = writeln!(
                    out,
                    "{:<24} {:<32} {:<32} {:<24} {}",
                    r.resource,
                    r.saved.as_deref().unwrap_or("-"),
                    r.next_start,
                    r.run_id.as_deref().unwrap_or("-"),
                    r.updated_at.as_deref().unwrap_or("-")
                );
            }
            exit::OK
        }
        Err(e) => fail(p.name(), &e, &secrets),
    }
}

async fn load(p: &spec::Pipeline, which: crate::run::RunSelector, force: bool) -> u8 {
    let secrets = crate::util::Secrets::default();
    match crate::run::load(p, &which, crate::load::LoadOptions { force }, &secrets).await {
        Ok(report) => {
            print_summary(&report);
            exit::OK
        }
        Err(e) => fail(p.name(), &e, &secrets),
    }
}

async fn run(p: &spec::Pipeline, opts: &crate::run::ExtractOptions, dry_run: bool) -> u8 {
    let secrets = crate::util::Secrets::default();
    if dry_run {
        let opts = crate::run::ExtractOptions {
            limit: opts.limit.or(Some(20)),
            ..opts.clone()
        };
        let mut show = |table: String| eprint!("{table}");
        return match crate::run::run_dry(p, &opts, &secrets, &mut show).await {
            Ok(rows) => {
                let mut out = std::io::stdout().lock();
                for r in rows {
                    let _ = writeln!(out, "{r}");
                }
                tracing::info!("dry run: nothing was staged or loaded");
                exit::OK
            }
            Err(e) => fail(p.name(), &e, &secrets),
        };
    }
    let result = crate::run::run(p, opts, &secrets).await;
    match result {
        Ok((_, loaded)) => {
            print_summary(&loaded);
            exit::OK
        }
        Err(e) => fail(p.name(), &e, &secrets),
    }
}

/// `init`, and with `--record` the recording of the spec it wrote (2 pages a resource).
fn init_then_record(
    args: Box<InitArgs>,
    output: Option<String>,
    append: Option<String>,
    force: bool,
    also: bool,
) -> u8 {
    let written = block_on(init(args, output.clone(), append, force));
    match (written, also, output) {
        (exit::OK, true, Some(out)) => {
            let Some(p) = compile_or_report(&out) else {
                return exit::FAILED;
            };
            let opts = crate::run::RecordOptions {
                resources: Vec::new(),
                pages: 2,
                parents: 2,
                dir: crate::run::default_dir(&p),
                after: None,
            };
            block_on(record(&p, &opts))
        }
        (code, _, _) => code,
    }
}

async fn record(p: &spec::Pipeline, opts: &crate::run::RecordOptions) -> u8 {
    let secrets = crate::util::Secrets::default();
    match crate::run::record(p, opts, &secrets).await {
        Ok(r) => {
            let each: Vec<String> = r.per_resource.iter().map(|(name, n)| format!("{name} {n}")).collect();
            println!(
                "recorded {} exchanges ({}) into {}: {}",
                r.per_resource.iter().map(|(_, n)| n).sum::<usize>(),
                crate::init::sample::human_bytes(r.bytes),
                r.dir.display(),
                each.join(", ")
            );
            println!(
                "at most {} pages per resource and {} parents per for_each resource; next: sluice test {}",
                opts.pages,
                opts.parents,
                p.file()
            );
            exit::OK
        }
        Err(e) => fail(p.name(), &e, &secrets),
    }
}

fn print_summary(report: &crate::load::LoadReport) {
    let mut out = std::io::stdout().lock();
    let limited = if report.limited {
        " (limited by --limit: part of each resource; the incremental state was not moved)"
    } else {
        ""
    };
    let _ = writeln!(out, "run {} loaded into {}{limited}", report.run_id, report.target);
    for why in &report.skipped {
        let _ = writeln!(out, "{why}");
    }
    let _ = writeln!(
        out,
        "{:<16} {:<20} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10}",
        "resource", "table", "records", "rows", "inserted", "updated", "rejected", "seconds", "rows/s"
    );
    for t in &report.tables {
        let rate = if t.seconds > 0.0 {
            (t.rows as f64 / t.seconds) as u64
        } else {
            0
        };
        let _ = writeln!(
            out,
            "{:<16} {:<20} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8.2} {:>10}",
            t.resource, t.table, t.records, t.rows, t.inserted, t.updated, t.rejected, t.seconds, rate
        );
    }
    for t in &report.tables {
        if t.filtered > 0 {
            let _ = writeln!(
                out,
                "resource {}: {} of {} records left out by `filter`",
                t.resource, t.filtered, t.records
            );
        }
        if t.ignored > 0 {
            let _ = writeln!(
                out,
                "resource {}: {} responses ignored by `on_response` (see the log for each)",
                t.resource, t.ignored
            );
        }
    }
    for t in &report.tables {
        for f in &t.expectations {
            let _ = writeln!(out, "warning: expectation failed: {f}");
        }
    }
    // Columns that stayed null in some rows because their path was not there.
    for t in &report.tables {
        for (column, matched) in t.matched.iter().filter(|(_, m)| **m < t.rows) {
            let _ = writeln!(
                out,
                "  {}.{column}: path matched in {matched} of {} rows (null in the others)",
                t.table, t.rows
            );
        }
    }
    if let Some(hint) = &report.query_hint {
        let _ = writeln!(out, "query it: {hint}");
    }
}

fn init_logging(quiet: bool, format: LogFormat, bars: bool) {
    use tracing_subscriber::EnvFilter;
    // tokio-postgres logs every server NOTICE at info; those are not news to a user.
    let default = if quiet { "warn" } else { "info,tokio_postgres=warn" };
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if bars && crate::progress::init_with_bars(filter) {
        return;
    }
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// On Lambda: JSON lines on stdout, which CloudWatch Logs keeps one event per line.
fn init_lambda_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info,tokio_postgres=warn" };
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .event_format(crate::aws::logs::LambdaJson)
        .try_init();
}

fn block_on<F: std::future::Future<Output = u8>>(f: F) -> u8 {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(async {
            crate::util::watch_signals();
            f.await
        }),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::FAILED
        }
    }
}

/// Print an error and its causes, secrets masked, and give the failure exit code.
fn fail(pipeline: &str, e: &(dyn std::error::Error + 'static), secrets: &crate::util::Secrets) -> u8 {
    let stopped = match e.downcast_ref::<crate::run::RunError>() {
        Some(crate::run::RunError::Interrupted { signal, .. }) => Some(*signal),
        Some(crate::run::RunError::Suspended { signal, .. }) if *signal > 0 => Some(*signal),
        _ => None,
    };
    if let Some(signal) = stopped {
        eprintln!("pipeline `{pipeline}`: {e}");
        // The shell's convention: 128 + the signal.
        return 128 + signal as u8;
    }
    let msg = format!("error: pipeline `{pipeline}`: {}", crate::util::error_chain(e));
    eprintln!("{}", secrets.mask(&msg));
    exit::FAILED
}

async fn extract(p: &spec::Pipeline, opts: &crate::run::ExtractOptions, dry_run: bool) -> u8 {
    let secrets = crate::util::Secrets::default();
    let mut out = std::io::stdout().lock();
    if dry_run {
        return match crate::run::extract_dry_run(p, opts, &secrets).await {
            Ok(per_resource) => {
                for (name, records) in per_resource {
                    tracing::info!(resource = %name, records = records.len(), "dry run: nothing was staged");
                    for r in records {
                        let _ = writeln!(out, "{r}");
                    }
                }
                exit::OK
            }
            Err(e) => fail(p.name(), &e, &secrets),
        };
    }
    let result = crate::run::extract(p, opts, &secrets).await;
    match result {
        Ok(report) => {
            let _ = writeln!(out, "run {} staged to {}", report.run.run_id, report.location);
            let _ = writeln!(
                out,
                "{:<24} {:>7} {:>10} {:>8} {:>12}",
                "resource", "pages", "records", "objects", "bytes"
            );
            for r in &report.manifest.resources {
                let (records, bytes) = crate::run::object_totals(&r.objects);
                let _ = writeln!(
                    out,
                    "{:<24} {:>7} {:>10} {:>8} {:>12}",
                    r.name,
                    r.pages,
                    records,
                    r.objects.len(),
                    bytes
                );
            }
            for r in report.manifest.resources.iter().filter(|r| r.ignored > 0) {
                let _ = writeln!(
                    out,
                    "resource {}: {} responses ignored by `on_response` (see the log for each)",
                    r.name, r.ignored
                );
            }
            for r in report.manifest.resources.iter().filter(|r| r.skipped > 0) {
                let _ = writeln!(
                    out,
                    "resource {}: {} parent records skipped: a response rule ignored their request (`on_missing: skip` is the 404 one)",
                    r.name, r.skipped
                );
            }
            for r in &report.manifest.resources {
                for o in &r.objects {
                    let _ = writeln!(
                        out,
                        "object {} ({} records, {} bytes, sha256 {})",
                        o.key, o.records, o.bytes, o.sha256
                    );
                }
            }
            let _ = writeln!(out, "manifest {}", report.manifest_key);
            exit::OK
        }
        Err(e) => fail(p.name(), &e, &secrets),
    }
}

/// Load a spec, printing its diagnostics to stderr when it is invalid.
fn compile_or_report(path: &str) -> Option<spec::Pipeline> {
    compile_or_report_with_text(path).map(|(p, _)| p)
}

/// [`compile_or_report`], keeping the spec's text.
fn compile_or_report_with_text(path: &str) -> Option<(spec::Pipeline, String)> {
    match spec::compile_file_with_text(path) {
        Ok(loaded) => Some(loaded),
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
    let mut valid: Vec<(&str, spec::Pipeline, Option<String>)> = Vec::new();
    let mut checked = Vec::new();
    for file in files {
        let (text, diagnostics): (Option<String>, Vec<Diagnostic>) = match spec::compile_file(file) {
            Ok(p) => {
                let text = std::fs::read_to_string(file).ok();
                let warnings = p.warnings().to_vec();
                valid.push((file, p, text.clone()));
                (text, warnings)
            }
            Err(e) => (e.text, e.diagnostics),
        };
        checked.push((file, text, diagnostics));
    }
    // Specs validated together may share a staging location: their keys must keep apart.
    for (i, (fa, a, text)) in valid.iter().enumerate() {
        for (fb, b, _) in &valid[i + 1..] {
            if let Some(why) = crate::stage::shared_staging(a, b) {
                let line = text
                    .as_deref()
                    .and_then(|t| t.lines().position(|l| l.trim_start().starts_with("location:")))
                    .map_or(1, |n| n + 1);
                let pos = spec::diagnostic::Pos { line, column: 1 };
                let d = Diagnostic::new(fa, pos, "staging", format!("{why} (with {fb})"));
                if let Some(entry) = checked.iter_mut().find(|c| c.0 == *fa) {
                    entry.2.push(d);
                }
            }
        }
    }
    for (file, text, diagnostics) in checked {
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == spec::diagnostic::Severity::Error)
            .count();
        problems += errors;
        for d in &diagnostics {
            let line = match format {
                Format::Human => d.render_human(text.as_deref()),
                Format::Json => d.render_json() + "\n",
                Format::Github => d.render_github() + "\n",
            };
            let _ = out.write_all(line.as_bytes());
        }
        if format == Format::Human && errors == 0 {
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

fn diagram(
    specs: &[String],
    output: Option<&str>,
    format: Option<DiagramFormat>,
    page: DiagramPages,
    check: bool,
) -> u8 {
    let mut pipelines = Vec::new();
    for s in specs {
        match compile_or_report(s) {
            Some(p) => pipelines.push(p),
            None => return exit::FAILED,
        }
    }
    let format = format.unwrap_or_else(|| {
        match output
            .and_then(|o| o.rsplit_once('.'))
            .map(|(_, ext)| ext.to_ascii_lowercase())
        {
            Some(ext) if ext == "svg" => DiagramFormat::Svg,
            Some(ext) if ext == "png" => DiagramFormat::Png,
            _ => DiagramFormat::Drawio,
        }
    });
    let pages = match page {
        DiagramPages::Pipeline => crate::diagram::Pages::Pipeline,
        DiagramPages::Tables => crate::diagram::Pages::Tables,
        DiagramPages::All => crate::diagram::Pages::All,
    };
    let model = crate::diagram::build(&pipelines, pages);
    let bytes = match format {
        DiagramFormat::Drawio => crate::diagram::drawio::render(&model).into_bytes(),
        DiagramFormat::Svg => crate::diagram::svg::render(&model).into_bytes(),
        DiagramFormat::Png => match crate::diagram::svg::png(&crate::diagram::svg::render(&model)) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        },
    };
    let Some(path) = output else {
        let _ = std::io::stdout().lock().write_all(&bytes);
        return exit::OK;
    };
    if check {
        let regenerate = format!("sluice diagram {} -o {path}", specs.join(" "));
        let Ok(existing) = std::fs::read(path) else {
            eprintln!("error: {path} does not exist; write it with: {regenerate}");
            return exit::FAILED;
        };
        if existing == bytes {
            println!("{path} is up to date");
            return exit::OK;
        }
        // A picture differs in its bytes; only text has lines to show.
        if matches!(format, DiagramFormat::Png) {
            eprintln!(
                "error: {path} is out of date with the specs (a PNG of {} bytes; the specs draw one of {}); regenerate it with: {regenerate}",
                existing.len(),
                bytes.len()
            );
            return exit::FAILED;
        }
        let old = String::from_utf8_lossy(&existing);
        let new = String::from_utf8_lossy(&bytes);
        let (old_lines, new_lines): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
        let differing = (0..old_lines.len().max(new_lines.len()))
            .filter(|&i| old_lines.get(i) != new_lines.get(i))
            .count();
        eprintln!("error: {path} is out of date with the specs ({differing} lines differ; it has {} lines, the specs give {})", old_lines.len(), new_lines.len());
        if let Some(i) = (0..old_lines.len().max(new_lines.len())).find(|&i| old_lines.get(i) != new_lines.get(i)) {
            eprintln!("  first difference at line {}:", i + 1);
            eprintln!(
                "  - {}",
                crate::util::clip(old_lines.get(i).unwrap_or(&"(end of file)"), 160)
            );
            eprintln!(
                "  + {}",
                crate::util::clip(new_lines.get(i).unwrap_or(&"(end of file)"), 160)
            );
        }
        eprintln!("  regenerate it with: {regenerate}");
        return exit::FAILED;
    }
    match std::fs::write(path, &bytes) {
        Ok(()) => {
            tracing::info!(file = path, bytes = bytes.len(), "diagram written");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot write {path}: {e}");
            exit::FAILED
        }
    }
}
/// The spec's JSON Schema as a path relative to the spec file `out`, when a
/// `schemas/pipeline.schema.json` sits in the file's folder or one above it (a clone of
/// sluice, or a project that keeps the schema the way the reference pipelines do).
fn schema_beside(out: &str) -> Option<String> {
    let dir = std::path::absolute(out).ok()?.parent()?.to_path_buf();
    for (up, ancestor) in dir.ancestors().enumerate() {
        if ancestor.join("schemas/pipeline.schema.json").is_file() {
            return Some(format!("{}schemas/pipeline.schema.json", "../".repeat(up)));
        }
    }
    None
}
