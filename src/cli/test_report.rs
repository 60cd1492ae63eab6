//! `sluice test`: run each spec against its recording and report, as text, JSON Lines,
//! GitHub annotations or JUnit XML.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{compile_or_report, exit, TestFormat};
use crate::run::Tested;

/// Test `specs` against the recordings under `recordings`; the exit code.
pub(super) async fn test(specs: &[String], recordings: &str, format: TestFormat) -> u8 {
    let mut results: Vec<Result<Tested, (String, String)>> = Vec::new();
    for spec in specs {
        let Some(p) = compile_or_report(spec) else {
            results.push(Err((spec.clone(), "the spec is not valid (see above)".into())));
            continue;
        };
        let root = Path::new(recordings);
        let dir: PathBuf = match specs.len() == 1 && root.join(crate::replay::INDEX).exists() {
            true => root.to_path_buf(),
            false => root.join(p.name()),
        };
        let secrets = crate::util::Secrets::default();
        match crate::run::test(&p, &dir, &secrets).await {
            Ok(t) => results.push(Ok(t)),
            Err(e) => results.push(Err((spec.clone(), secrets.mask(&e.to_string())))),
        }
    }
    let mut out = std::io::stdout().lock();
    let text = match format {
        TestFormat::Human => human(&results),
        TestFormat::Github => github(&results) + &human(&results),
        TestFormat::Json => json(&results),
        TestFormat::Junit => junit(&results),
    };
    let _ = out.write_all(text.as_bytes());
    let failed = results
        .iter()
        .any(|r| r.as_ref().map_or(true, |t| !t.failures.is_empty()));
    if failed {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Where a failure is: `resource `x` page 2: `, or nothing.
fn place(f: &crate::run::TestFailure) -> String {
    match (&f.resource, f.page) {
        (Some(r), Some(p)) if p > 0 => format!("resource `{r}` page {p}: "),
        (Some(r), _) => format!("resource `{r}`: "),
        _ => String::new(),
    }
}

fn human(results: &[Result<Tested, (String, String)>]) -> String {
    let mut s = String::new();
    let mut failed = 0;
    for r in results {
        match r {
            Err((spec, e)) => {
                failed += 1;
                s.push_str(&format!("{spec}: FAILED: {e}\n"));
            }
            Ok(t) => {
                let tables: Vec<String> = t.tables.iter().map(|(n, rows)| format!("{n} {rows}")).collect();
                let status = if t.failures.is_empty() { "ok" } else { "FAILED" };
                failed += usize::from(!t.failures.is_empty());
                s.push_str(&format!(
                    "{}: {status}: {} of {} recorded exchanges served, rows loaded: {} ({:.2} s)\n",
                    t.spec,
                    t.served,
                    t.recorded,
                    if tables.is_empty() {
                        "none".to_string()
                    } else {
                        tables.join(", ")
                    },
                    t.seconds
                ));
                for f in &t.failures {
                    s.push_str(&format!("  {}{}\n", place(f), f.message.replace('\n', "\n  ")));
                }
                for w in &t.warnings {
                    s.push_str(&format!("  warning: {w}\n"));
                }
            }
        }
    }
    s.push_str(&format!(
        "{} of {} specs passed\n",
        results.len() - failed,
        results.len()
    ));
    s
}

/// GitHub Actions workflow commands: one `::error` per failure, on the spec file.
fn github(results: &[Result<Tested, (String, String)>]) -> String {
    let escape = |m: &str| m.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let mut s = String::new();
    for r in results {
        match r {
            Err((spec, e)) => s.push_str(&format!("::error file={spec},title=sluice test::{}\n", escape(e))),
            Ok(t) => {
                for f in &t.failures {
                    s.push_str(&format!(
                        "::error file={},title=sluice test ({})::{}\n",
                        t.spec,
                        f.kind,
                        escape(&format!("{}{}", place(f), f.message))
                    ));
                }
                for w in &t.warnings {
                    s.push_str(&format!(
                        "::warning file={},title=sluice test (expectation)::{}\n",
                        t.spec,
                        escape(w)
                    ));
                }
            }
        }
    }
    s
}

fn json(results: &[Result<Tested, (String, String)>]) -> String {
    let mut s = String::new();
    for r in results {
        let v = match r {
            Ok(t) => serde_json::json!({"ok": t.failures.is_empty(), "result": t}),
            Err((spec, e)) => serde_json::json!({"ok": false, "spec": spec, "error": e}),
        };
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

/// JUnit XML: a test suite per spec, a test case per resource (and one for the pipeline
/// as a whole), each failure in the case of its resource.
fn junit(results: &[Result<Tested, (String, String)>]) -> String {
    let x = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut suites = String::new();
    let (mut tests, mut failures) = (0, 0);
    for r in results {
        let (spec, cases) = match r {
            Err((spec, e)) => (spec.clone(), vec![("pipeline".to_string(), vec![e.clone()], 0.0)]),
            Ok(t) => {
                let mut names: Vec<String> = vec!["pipeline".into()];
                let p = compile_or_report(&t.spec);
                names.extend(p.iter().flat_map(|p| p.resources().iter().map(|r| r.name.clone())));
                let cases = names
                    .into_iter()
                    .map(|n| {
                        let of = |f: &&crate::run::TestFailure| match &f.resource {
                            Some(r) => *r == n,
                            None => n == "pipeline",
                        };
                        let msgs = t
                            .failures
                            .iter()
                            .filter(of)
                            .map(|f| format!("{}{}", place(f), f.message))
                            .collect();
                        (n, msgs, t.seconds)
                    })
                    .collect();
                (t.spec.clone(), cases)
            }
        };
        let failed = cases.iter().filter(|(_, m, _)| !m.is_empty()).count();
        tests += cases.len();
        failures += failed;
        suites.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
            x(&spec),
            cases.len()
        ));
        for (name, msgs, secs) in cases {
            let case = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{secs:.3}\"",
                x(&spec),
                x(&name)
            );
            match msgs.first() {
                None => suites.push_str(&format!("{case}/>\n")),
                Some(first) => suites.push_str(&format!(
                    "{case}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    x(first),
                    x(&msgs.join("\n"))
                )),
            }
        }
        suites.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"sluice test\" tests=\"{tests}\" failures=\"{failures}\">\n{suites}</testsuites>\n"
    )
}
