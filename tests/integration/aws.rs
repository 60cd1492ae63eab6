//! sluice on AWS: the Lambda handler driven through the real Runtime API protocol (staging
//! on the S3 test server, the warehouse on the test PostgreSQL, secrets from moto's
//! Secrets Manager), the CloudFormation template under cfn-lint, and the package's
//! `bootstrap` checked for Amazon Linux 2023's glibc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::extract::fixture_appearances;
use crate::support::api::{ApiServer, Fault};
use crate::support::lambda::RuntimeApi;
use crate::support::s3::S3Server;
use crate::support::tools::{tool, Moto};
use crate::support::{pg, recorded, root, Background, Sluice};

/// A folder holding copies of the given reference pipelines (what the package bundles).
fn specs(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(
            root().join(format!("pipelines/{n}.yaml")),
            dir.path().join(format!("{n}.yaml")),
        )
        .unwrap();
    }
    dir
}

/// A `sluice lambda` process on `runtime`, staging in `s3://lake/sluice`.
fn function(runtime: &RuntimeApi, s3: &S3Server, api: &ApiServer, specs: &Path, logs: &Path) -> Sluice {
    s3.bucket("lake");
    Sluice::new(["lambda"])
        .envs(runtime.env())
        .envs(s3.env())
        .api(api)
        .env("SLUICE_STAGING", "s3://lake/sluice")
        .env("SLUICE_SPECS", specs)
        .dir(logs)
}

/// Every line the function wrote on stdout is a JSON object.
fn json_lines(f: &Background) -> Vec<Value> {
    f.stdout()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}")))
        .collect()
}

const LONG: Duration = Duration::from_secs(180);

fn staged_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(staged_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_scheduled_extract_then_its_manifest_notification_loads_the_run() {
    let (api, s3, runtime) = (ApiServer::start(), S3Server::start(), RuntimeApi::start());
    let db = pg::fresh_database();
    let (dir, logs) = (specs(&["rickandmorty"]), tempfile::tempdir().unwrap());
    let f = function(&runtime, &s3, &api, dir.path(), logs.path())
        .env("DATABASE_URL", &db)
        .spawn(logs.path());

    // What the schedule sends.
    let id = runtime.invoke(json!({"pipeline": "rickandmorty", "step": "extract"}), LONG);
    let out = runtime.outcome(&id, LONG);
    assert_eq!(out.kind, "response", "{:?}\nstdout: {}", out.body, f.stdout());
    let extracted = &out.body["extracted"];
    let run_id = extracted["run_id"].as_str().unwrap().to_string();
    let manifest = extracted["manifest"].as_str().unwrap();
    assert_eq!(manifest, format!("rickandmorty/_manifests/{run_id}.json"));
    let counts: Vec<(String, u64)> = extracted["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["records"].as_u64().unwrap()))
        .collect();
    let want = |ep: &str| recorded(ep).len() as u64;
    assert_eq!(
        counts,
        [
            ("location".to_string(), want("location")),
            ("episode".to_string(), want("episode")),
            ("character".to_string(), want("character"))
        ]
    );
    let manifest_file = s3.root().join("lake/sluice").join(manifest);
    assert!(manifest_file.is_file(), "{manifest_file:?}");
    assert_eq!(
        pg::scalar(&db, "SELECT to_regclass('rickandmorty.character')::text"),
        None,
        "extract loaded nothing"
    );

    // What S3 sends when the manifest lands: the load of exactly that run.
    let notification = json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "lake", "arn": "arn:aws:s3:::lake"}, "object": {"key": format!("sluice/{manifest}"), "size": 1024}}
    }]});
    let id = runtime.invoke(notification, LONG);
    let out = runtime.outcome(&id, LONG);
    assert_eq!(out.kind, "response", "{:?}\nstdout: {}", out.body, f.stdout());
    assert_eq!(out.body["step"], "load");
    assert_eq!(out.body["loaded"]["run_id"], run_id.as_str());
    let rows: Vec<(String, u64)> = out.body["loaded"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_string(), t["rows"].as_u64().unwrap()))
        .collect();
    assert!(
        rows.contains(&("appearance".to_string(), fixture_appearances() as u64)),
        "{rows:?}"
    );
    for (table, ep) in [
        ("character", "character"),
        ("location", "location"),
        ("episode", "episode"),
    ] {
        let n = pg::scalar(&db, &format!("SELECT count(*) FROM rickandmorty.{table}"));
        assert_eq!(n, Some(want(ep).to_string()), "{table}");
    }
    let n = pg::scalar(&db, "SELECT count(*) FROM rickandmorty.appearance");
    assert_eq!(n, Some(fixture_appearances().to_string()));
    let ledger = pg::query(
        &db,
        "SELECT run_id, status FROM _sluice.runs WHERE pipeline = 'rickandmorty'",
    );
    assert_eq!(ledger, vec![vec![Some(run_id.clone()), Some("loaded".into())]]);

    // The same notification through EventBridge (how the template wires it) finds the run
    // loaded already and changes nothing.
    let bridged = json!({"version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": "lake"}, "object": {"key": format!("sluice/{manifest}")}}});
    let id = runtime.invoke(bridged, LONG);
    assert_eq!(runtime.outcome(&id, LONG).kind, "response");
    let n = pg::scalar(&db, "SELECT count(*) FROM rickandmorty.appearance");
    assert_eq!(n, Some(fixture_appearances().to_string()));

    let lines = json_lines(&f);
    assert!(
        lines.iter().any(|l| l["message"] == "invocation succeeded"),
        "{lines:?}"
    );
    // Log lines are flat, with the invocation's id; only the first was a cold start.
    let (logs, emf): (Vec<&Value>, Vec<&Value>) = lines.iter().partition(|l| l["_aws"].is_null());
    for l in &logs {
        assert!(
            l["level"].is_string() && l["message"].is_string() && l["timestamp"].is_string(),
            "{l}"
        );
    }
    let started: Vec<&&Value> = logs.iter().filter(|l| l["message"] == "invocation started").collect();
    assert!(started.len() >= 3, "{started:?}");
    assert!(
        started.iter().all(|l| l["function_request_id"].is_string()),
        "{started:?}"
    );
    assert_eq!(started[0]["cold_start"], true);
    assert!(started[1..].iter().all(|l| l["cold_start"] == false), "{started:?}");
    // The figures as CloudWatch metrics (EMF): records per resource, one run loaded (the
    // second, already-loaded notification adds none).
    let records: f64 = emf
        .iter()
        .filter(|l| l["Resource"].is_string() && l["Records"].is_number())
        .map(|l| l["Records"].as_f64().unwrap())
        .sum();
    assert!(records > 0.0, "{emf:?}");
    let loaded: f64 = emf.iter().filter_map(|l| l["RunsLoaded"].as_f64()).sum();
    assert_eq!(loaded, 1.0, "{emf:?}");
    for l in &emf {
        assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Namespace"], "sluice");
        assert_eq!(l["Pipeline"], "rickandmorty");
    }
}

#[test]
fn failing_events_post_errors_and_a_short_deadline_leaves_no_manifest() {
    let (api, s3, runtime) = (ApiServer::start(), S3Server::start(), RuntimeApi::start());
    let (dir, logs) = (specs(&["rickandmorty"]), tempfile::tempdir().unwrap());
    let f = function(&runtime, &s3, &api, dir.path(), logs.path())
        .env("DATABASE_URL", pg::fresh_database())
        .env("SLUICE_DEADLINE_RESERVE", "1s")
        .spawn(logs.path());
    let error = |event: Value, time: Duration| {
        let id = runtime.invoke(event, time);
        let out = runtime.outcome(&id, LONG);
        assert_eq!(out.kind, "error", "{:?}", out.body);
        let (kind, message) = (
            out.body["errorType"].as_str().unwrap().to_string(),
            out.body["errorMessage"].as_str().unwrap().to_string(),
        );
        assert!(out.error_type.is_some(), "the error-type header is set");
        (kind, message)
    };

    let (kind, message) = error(json!({"pipeline": "nope", "step": "extract"}), LONG);
    assert_eq!(kind, "Sluice.BadEvent");
    assert!(
        message.contains("no bundled spec defines pipeline `nope`; the package has `rickandmorty`"),
        "{message}"
    );

    let foreign = json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "elsewhere"},
        "object": {"key": "sluice/rickandmorty/_manifests/20261127T000000Z-abcdef.json"}}}]});
    let (kind, message) = error(foreign, LONG);
    assert_eq!(kind, "Sluice.BadEvent");
    assert!(
        message.contains("is not in the staging location of pipeline `rickandmorty` (s3://lake/sluice)"),
        "{message}"
    );

    let (kind, message) = error(
        json!({"pipeline": "rickandmorty", "step": "load", "run_id": "20261127T000000Z-abcdef"}),
        LONG,
    );
    assert_eq!(kind, "Sluice.RunFailed");
    assert!(message.contains("20261127T000000Z-abcdef"), "{message}");

    // The deadline is too close to start: not one request.
    let before = api.requests().len();
    let (kind, message) = error(
        json!({"pipeline": "rickandmorty", "step": "extract"}),
        Duration::from_millis(600),
    );
    assert_eq!(kind, "Sluice.Deadline");
    assert!(
        message.contains("page 1: stopped before the invocation deadline"),
        "{message}"
    );
    assert_eq!(api.requests().len(), before, "no API request");

    // Slow pages: some are fetched, then no new request starts inside the reserve; what
    // was read is stored and checkpointed, and the answer says to go on.
    api.fault("/api/location", Fault::Stall(Duration::from_millis(700)), 100);
    let id = runtime.invoke(
        json!({"pipeline": "rickandmorty", "step": "extract", "resources": ["location"]}),
        Duration::from_secs(4),
    );
    let out = runtime.outcome(&id, LONG);
    assert_eq!(
        (out.kind.as_str(), &out.body["status"]),
        ("response", &json!("continue")),
        "{:?}",
        out.body
    );
    let run_id = out.body["run_id"].as_str().unwrap().to_string();
    let staged_records = out.body["staged"]["records"].as_u64().unwrap();
    assert!(staged_records > 0 && staged_records < 126, "{:?}", out.body);
    let left = staged_files(&s3.root().join("lake"));
    assert!(
        left.iter().all(|p| !p.to_string_lossy().contains("_manifests")),
        "{left:?}"
    );
    assert!(
        left.iter().any(|p| p.to_string_lossy().contains("_checkpoints")),
        "the run is checkpointed: {left:?}"
    );
    api.rules_clear();
    let id = runtime.invoke(
        json!({"pipeline": "rickandmorty", "step": "extract", "resume": run_id}),
        LONG,
    );
    let out = runtime.outcome(&id, LONG);
    assert_eq!(
        (out.kind.as_str(), &out.body["status"]),
        ("response", &json!("done")),
        "{:?}",
        out.body
    );
    assert_eq!(out.body["run_id"], json!(run_id));
    assert_eq!(
        out.body["extracted"]["resources"][0]["records"],
        json!(126),
        "{:?}",
        out.body
    );

    // One stalled request (the spec's own timeout is 30 s) is cut off at the reserve:
    // an answer before the invocation's deadline that says to go on, nothing staged.
    api.fault("/api/episode", Fault::Stall(Duration::from_secs(60)), 1);
    let started = std::time::Instant::now();
    let id = runtime.invoke(
        json!({"pipeline": "rickandmorty", "step": "extract", "resources": ["episode"]}),
        Duration::from_secs(3),
    );
    let out = runtime.outcome(&id, LONG);
    let took = started.elapsed();
    assert_eq!(out.body["status"], json!("continue"), "{:?}", out.body);
    assert_eq!(out.body["staged"]["records"], json!(0), "{:?}", out.body);
    assert!(
        took < Duration::from_secs(3),
        "the answer came after the deadline: {took:?}"
    );
    let left = staged_files(&s3.root().join("lake"));
    assert!(
        left.iter().all(|p| !p.to_string_lossy().contains("/episode/")),
        "{left:?}"
    );

    // The loop goes on after failures, and each is logged once, whole.
    let errors: Vec<Value> = json_lines(&f).into_iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for e in &errors {
        assert_eq!(e["message"], "invocation failed", "{e}");
        assert!(e["error_type"].is_string() && e["error"].is_string(), "{e}");
    }
}

#[test]
fn a_secret_from_secrets_manager_reaches_the_run_and_no_log_line() {
    let (api, s3, runtime, moto) = (
        ApiServer::start(),
        S3Server::start(),
        RuntimeApi::start(),
        Moto::start(),
    );
    let db = pg::fresh_database();
    let key = "sm-secret-key-7f3a9c";
    let arn = moto.secret(
        "sluice/coincap",
        &json!({"COINCAP_TOKEN": key, "DATABASE_URL": db}).to_string(),
    );
    let (dir, logs) = (specs(&["coincap"]), tempfile::tempdir().unwrap());
    let f = function(&runtime, &s3, &api, dir.path(), logs.path())
        .env("SLUICE_SECRETS", &arn)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto.endpoint)
        .spawn(logs.path());
    // `api()` sets a key in the environment; the secret's must win.
    let id = runtime.invoke(json!({"pipeline": "coincap", "step": "run"}), LONG);
    let out = runtime.outcome(&id, LONG);
    assert_eq!(
        out.kind,
        "response",
        "{:?}\nstdout: {}\nstderr: {}",
        out.body,
        f.stdout(),
        f.stderr()
    );

    let exchanges: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::fixture("api/coincap/exchanges-v2.json")).unwrap(),
    )
    .unwrap();
    let n = exchanges["data"].as_array().unwrap().len();
    assert_eq!(out.body["loaded"]["tables"][0]["rows"], n as u64);
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) FROM coincap.exchange_snapshot"),
        Some(n.to_string())
    );
    let sent: Vec<String> = api.requests().into_iter().filter_map(|r| r.authorization).collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|a| a == &format!("Bearer {key}")),
        "{sent:?}"
    );

    // A refused key: the error names where the key comes from, never the key.
    api.fault("/v3/exchanges", Fault::Status(401), 10);
    let id = runtime.invoke(json!({"pipeline": "coincap", "step": "extract"}), LONG);
    let out = runtime.outcome(&id, LONG);
    assert_eq!(out.kind, "error");
    let message = out.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("HTTP 401"), "{message}");
    for text in [f.stdout(), f.stderr(), message.to_string(), out.body.to_string()] {
        assert!(!text.contains(key), "the secret leaked: {text}");
    }
    let staged: Vec<String> = staged_files(&s3.root().join("lake"))
        .into_iter()
        .map(|p| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert!(staged.iter().all(|s| !s.contains(key)));
}

#[test]
fn bootstrap_without_arguments_serves_the_runtime_api_and_refuses_local_targets() {
    // Lambda starts `bootstrap` with no arguments.
    let (dir, logs) = (specs(&["rickandmorty"]), tempfile::tempdir().unwrap());
    let bootstrap = logs.path().join("bootstrap");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sluice"), &bootstrap).unwrap();
    let start = |runtime: &RuntimeApi, staging: Option<&str>| {
        let mut cmd = std::process::Command::new(&bootstrap);
        cmd.envs(runtime.env())
            .env("SLUICE_SPECS", dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("SLUICE_STAGING")
            .current_dir(logs.path())
            .stdout(std::process::Stdio::null());
        if let Some(s) = staging {
            cmd.env("SLUICE_STAGING", s);
        }
        cmd.spawn().unwrap()
    };
    let error = |runtime: &RuntimeApi, event: Value| {
        let out = runtime.outcome(&runtime.invoke(event, LONG), LONG);
        assert_eq!(out.kind, "error", "{:?}", out.body);
        (
            out.body["errorType"].as_str().unwrap().to_string(),
            out.body["errorMessage"].as_str().unwrap().to_string(),
        )
    };
    let runtime = RuntimeApi::start();
    let mut child = start(&runtime, None);
    let bad = error(&runtime, json!({"pipeline": "rickandmorty", "step": "sing"}));
    // The specs' local defaults would vanish with the sandbox.
    let staging = error(&runtime, json!({"pipeline": "rickandmorty", "step": "extract"}));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(bad.0, "Sluice.BadEvent");
    assert_eq!(staging.0, "Sluice.Config");
    assert!(
        staging
            .1
            .contains("staging resolves to `file://.sluice/staging`; on AWS Lambda staging must be an S3 location"),
        "{}",
        staging.1
    );

    let runtime = RuntimeApi::start();
    let mut child = start(&runtime, Some("s3://lake/sluice"));
    let sqlite = error(&runtime, json!({"pipeline": "rickandmorty", "step": "load"}));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(sqlite.0, "Sluice.Config");
    assert!(sqlite.1.contains("the warehouse resolves to an SQLite file, which would vanish with the Lambda sandbox; put the PostgreSQL URL in the secret as `DATABASE_URL`"), "{}", sqlite.1);
    assert!(!logs.path().join(".sluice").exists(), "nothing was written locally");
}

#[test]
fn a_missing_then_rotated_rds_secret_reaches_the_warm_sandbox() {
    let (api, s3, runtime, moto) = (
        ApiServer::start(),
        S3Server::start(),
        RuntimeApi::start(),
        Moto::start(),
    );
    let (dir, logs) = (specs(&["coincap"]), tempfile::tempdir().unwrap());
    let f = function(&runtime, &s3, &api, dir.path(), logs.path())
        .env("SLUICE_SECRETS", "sluice/late")
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto.endpoint)
        .spawn(logs.path());
    let invoke = |event: Value| runtime.outcome(&runtime.invoke(event, LONG), LONG);

    // The secret does not exist yet: a one-line reason, and the next invocation reads again.
    let out = invoke(json!({"pipeline": "coincap", "step": "extract"}));
    assert_eq!(out.kind, "error");
    assert_eq!(out.body["errorType"], "Sluice.Secrets");
    let message = out.body["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("cannot read secret `sluice/late` from Secrets Manager: ResourceNotFoundException"),
        "{message}"
    );
    assert!(message.len() < 300 && !message.contains('\n'), "{message}");

    // Created as Secrets Manager writes RDS credentials (the port a number), but naming a
    // database that is not there.
    let db = url::Url::parse(&pg::fresh_database()).unwrap();
    let rds = |dbname: &str| {
        json!({"engine": "postgres", "host": db.host_str().unwrap(), "port": db.port().unwrap_or(5432),
               "username": db.username(), "password": db.password().unwrap_or("unused"), "dbname": dbname,
               "COINCAP_TOKEN": "k-1"})
        .to_string()
    };
    moto.secret("sluice/late", &rds("no_such_database"));
    let out = invoke(json!({"pipeline": "coincap", "step": "run"}));
    assert_eq!(out.kind, "error", "{:?}", out.body);
    let message = out.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("no_such_database"), "{message}");

    // Fixed in Secrets Manager: the warm sandbox's failed attempt reads it again and goes on.
    moto.rotate("sluice/late", &rds(db.path().trim_start_matches('/')));
    let out = invoke(json!({"pipeline": "coincap", "step": "run"}));
    assert_eq!(out.kind, "response", "{:?}\n{}", out.body, f.stdout());
    assert!(
        out.body["loaded"]["tables"][0]["rows"].as_u64().unwrap() > 0,
        "{:?}",
        out.body
    );
    assert!(
        f.stdout()
            .contains("the secrets changed since they were read; trying again"),
        "{}",
        f.stdout()
    );
}

/// cfn-lint's verdict on a template: its exit code and what it printed.
fn cfn_lint(template: &Path) -> (i32, String) {
    let out = std::process::Command::new(tool("cfn-lint"))
        .arg(template)
        .output()
        .expect("cfn-lint runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn template(specs: &[&str], dir: &Path) -> (PathBuf, serde_yaml::Value) {
    let path = dir.join(format!("{}.yaml", specs.join("-")));
    let mut args = vec!["deploy".to_string(), "aws".into()];
    args.extend(specs.iter().map(|s| format!("pipelines/{s}.yaml")));
    args.extend(["-o".into(), path.to_string_lossy().into_owned()]);
    Sluice::new(args)
        .env("COINCAP_TOKEN", "never-in-a-template-5d1e")
        .env("DATABASE_URL", "postgres://u:never-in-a-template-pw@db/x")
        .run()
        .success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("never-in-a-template"), "a secret in the template");
    (path, serde_yaml::from_str(&text).unwrap())
}

#[test]
fn the_template_passes_cfn_lint_for_both_reference_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    for specs in [&["rickandmorty"][..], &["coincap"], &["rickandmorty", "coincap"]] {
        let (path, _) = template(specs, dir.path());
        let (code, said) = cfn_lint(&path);
        assert_eq!(code, 0, "cfn-lint on the template of {specs:?}:\n{said}");
    }
    // The linter does find errors: a runtime Lambda has not.
    let (path, _) = template(&["coincap"], dir.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("provided.al2023", "provided.al1999");
    std::fs::write(&path, text).unwrap();
    let (code, said) = cfn_lint(&path);
    assert_ne!(code & 2, 0, "{said}");
    // It reads the state machine's definition too: a state of no known type.
    let (path, _) = template(&["coincap"], dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("Type: Choice"));
    std::fs::write(&path, text.replace("Type: Choice", "Type: Chooser")).unwrap();
    let (code, said) = cfn_lint(&path);
    assert!(
        code != 0 && said.contains("E3601") && said.contains("'Chooser'"),
        "{said}"
    );
}

/// checkov's JSON report on a template.
fn checkov(template: &Path) -> Value {
    let out = std::process::Command::new(tool("checkov"))
        .args(["--framework", "cloudformation", "--skip-download", "-o", "json", "-f"])
        .arg(template)
        .output()
        .expect("checkov runs");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov's report ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn checkov_passes_the_template_with_only_the_exceptions_it_states() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = template(&["rickandmorty", "coincap"], dir.path());
    let report = checkov(&path);
    assert_eq!(
        report["summary"]["failed"], 0,
        "{:#}",
        report["results"]["failed_checks"]
    );
    assert!(
        report["summary"]["passed"].as_u64().unwrap() >= 40,
        "{}",
        report["summary"]
    );
    // The exceptions are these, each with its reason in the template.
    let allowed = [
        "CKV_AWS_18",
        "CKV_AWS_27",
        "CKV_AWS_116",
        "CKV_AWS_117",
        "CKV_AWS_158",
        "CKV_AWS_173",
    ];
    for s in report["results"]["skipped_checks"].as_array().unwrap() {
        let id = s["check_id"].as_str().unwrap();
        assert!(allowed.contains(&id), "an unexplained exception: {s}");
        let why = s["check_result"]["suppress_comment"].as_str().unwrap_or_default();
        assert!(why.len() > 40, "{id} without its reason: {s}");
    }
    // It does find what is wrong: a bucket open to public ACLs.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("BlockPublicAcls: true", "BlockPublicAcls: false");
    std::fs::write(&path, text).unwrap();
    let report = checkov(&path);
    let failed: Vec<&str> = report["results"]["failed_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check_id"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"CKV_AWS_53"), "{failed:?}");
}

/// The actions a role's policy allows.
fn actions(t: &serde_yaml::Value, role: &str) -> Vec<String> {
    let statements = &t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let mut out = Vec::new();
    // A statement under a condition (the KMS key's) is left out.
    for s in statements
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|s| s["Fn::If"].is_null())
    {
        match &s["Action"] {
            serde_yaml::Value::String(a) => out.push(a.clone()),
            serde_yaml::Value::Sequence(list) => out.extend(list.iter().map(|a| a.as_str().unwrap().to_string())),
            other => panic!("{other:?}"),
        }
    }
    out
}

#[test]
fn the_template_stages_safely_with_least_privilege_and_a_schedule_per_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (_, t) = template(&["rickandmorty", "coincap"], dir.path());
    let r = &t["Resources"];
    let bucket = &r["StagingBucket"]["Properties"];
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["Fn::If"][2]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(bucket["PublicAccessBlockConfiguration"][flag], true, "{flag}");
    }
    let deny = &r["StagingBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");

    // Per pipeline, two roles, each reaching that pipeline's objects only.
    for (id, name) in [("Rickandmorty", "rickandmorty"), ("Coincap", "coincap")] {
        let extract = actions(&t, &format!("{id}ExtractRole"));
        let load = actions(&t, &format!("{id}LoadRole"));
        for a in ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"] {
            assert!(extract.contains(&a.into()), "{a}: {extract:?}");
        }
        assert!(
            load.contains(&"s3:GetObject".into()) && load.contains(&"s3:ListBucket".into()),
            "{load:?}"
        );
        assert!(
            !load.contains(&"s3:PutObject".into()) && !load.contains(&"s3:DeleteObject".into()),
            "{load:?}"
        );
        for a in extract.iter().chain(&load) {
            assert!(!a.contains('*'), "no wildcard action: {a}");
        }
        for role in ["Extract", "Load"] {
            let statements =
                &r[format!("{id}{role}Role").as_str()]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
            let objects = serde_yaml::to_string(&statements[1]["Resource"]).unwrap();
            assert!(objects.contains(&format!("${{StagingPrefix}}/{name}/*")), "{objects}");
            let listed = serde_yaml::to_string(&statements[0]["Condition"]).unwrap();
            assert!(listed.contains(&format!("${{StagingPrefix}}/{name}/")), "{listed}");
            assert!(
                !listed.contains("${StagingPrefix}/*") && !listed.contains("${StagingPrefix}/\n"),
                "{listed}"
            );
        }
        // Its own functions: the extract function never overlaps itself by default.
        let extract_fn = &r[format!("{id}ExtractFunction").as_str()]["Properties"];
        assert_eq!(extract_fn["ReservedConcurrentExecutions"], 1);
        // A pipeline's loads take turns.
        assert_eq!(
            r[format!("{id}LoadFunction").as_str()]["Properties"]["ReservedConcurrentExecutions"],
            1
        );
        let described = serde_yaml::to_string(&extract_fn["Description"]).unwrap();
        assert!(described.contains("(package ${CodeKey})"), "{described}");
        for f in ["Extract", "Load"] {
            let vars = &r[format!("{id}{f}Function").as_str()]["Properties"]["Environment"]["Variables"];
            let names: Vec<&str> = vars.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
            assert_eq!(
                names,
                [
                    "SLUICE_SECRETS",
                    "SLUICE_STAGING",
                    "SLUICE_PIPELINE",
                    "SLUICE_FUNCTION",
                    "SLUICE_S3_SSE"
                ],
                "{f}"
            );
            assert_eq!(vars["SLUICE_SECRETS"]["Fn::Join"][1]["Ref"], "SecretArns");
            assert_eq!(vars["SLUICE_PIPELINE"], name);
            assert_eq!(vars["SLUICE_FUNCTION"], f.to_lowercase());
        }
    }
    assert!(
        r["ExtractRole"].is_null() && r["ExtractFunction"].is_null(),
        "no shared function"
    );
    // Failed events go to the queue as failure destinations; the queue outlives the stack.
    let invoke = &r["CoincapExtractFunctionInvokeConfig"]["Properties"];
    assert_eq!(
        invoke["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0],
        "DeadLetterQueue"
    );
    assert!(r["CoincapExtractFunction"]["Properties"]["DeadLetterConfig"].is_null());
    assert_eq!(r["DeadLetterQueue"]["DeletionPolicy"], "Retain");
    // A freshness alarm per scheduled pipeline: no run loaded in 3 schedules.
    let window =
        |alarm: &serde_yaml::Value| alarm["Period"].as_u64().unwrap() * alarm["EvaluationPeriods"].as_u64().unwrap();
    let fresh = &r["CoincapFreshnessAlarm"]["Properties"];
    assert_eq!(fresh["Namespace"], "sluice");
    assert_eq!(fresh["MetricName"], "RunsLoaded");
    assert_eq!(fresh["TreatMissingData"], "breaching");
    assert_eq!(window(fresh), 900, "rate(5 minutes), 3 times");
    assert_eq!(window(&r["RickandmortyFreshnessAlarm"]["Properties"]), 3 * 86_400);
    // Private subnets: the endpoints, on request; staged runs may expire, and delete
    // markers of removed parts go.
    for e in ["S3Endpoint", "SecretsManagerEndpoint"] {
        assert_eq!(r[e]["Condition"], "CreateEndpoints", "{e}");
    }
    assert_eq!(r["S3Endpoint"]["Properties"]["VpcEndpointType"], "Gateway");
    assert!(t["Rules"]["EndpointsNeedTheVpc"].is_mapping());
    let rules = &bucket["LifecycleConfiguration"]["Rules"];
    assert_eq!(rules[0]["ExpiredObjectDeleteMarker"], true);
    assert_eq!(rules[1]["Fn::If"][0], "ExpireStaged");
    assert_eq!(
        rules[1]["Fn::If"][1]["ExpirationInDays"]["Ref"],
        "StagingExpirationDays"
    );
    assert_eq!(t["Parameters"]["StagingExpirationDays"]["Default"], 0);
    // A KMS key, when given, encrypts the bucket.
    let sse = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["Fn::If"];
    assert_eq!(sse[0], "HasKmsKey");
    assert_eq!(sse[1]["ServerSideEncryptionByDefault"]["SSEAlgorithm"], "aws:kms");
    // An optional permissions boundary on every role.
    let boundary = &r["CoincapLoadRole"]["Properties"]["PermissionsBoundary"]["Fn::If"];
    assert_eq!(boundary[0], "HasPermissionsBoundary");

    // One schedule per spec, starting its state machine, which alone invokes the two
    // functions (the load no longer waits on the manifest's S3 event).
    for (id, name, expression) in [
        ("Rickandmorty", "rickandmorty", "rate(1 day)"),
        ("Coincap", "coincap", "rate(5 minutes)"),
    ] {
        let rule = &r[format!("{id}Schedule").as_str()]["Properties"];
        assert_eq!(rule["ScheduleExpression"], expression);
        let target = &rule["Targets"][0];
        assert_eq!(target["Input"], "{}");
        assert_eq!(target["Arn"]["Ref"], format!("{id}StateMachine"));
        assert_eq!(target["RoleArn"]["Fn::GetAtt"][0], format!("{id}ScheduleRole"));
        assert_eq!(actions(&t, &format!("{id}ScheduleRole")), ["states:StartExecution"]);
        let may =
            &r[format!("{id}ScheduleRole").as_str()]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0];
        assert_eq!(may["Resource"]["Ref"], format!("{id}StateMachine"));
        assert!(r[format!("{id}ManifestRule").as_str()].is_null());
        assert!(
            r[format!("{id}SchedulePermission").as_str()].is_null(),
            "EventBridge invokes no function"
        );
        let machine = &r[format!("{id}StateMachine").as_str()]["Properties"];
        assert_eq!(machine["StateMachineType"], "STANDARD");
        assert_eq!(
            machine["Definition"]["States"]["Extract"]["Parameters"]["Payload"]["pipeline"],
            name
        );
        let subs = &machine["DefinitionSubstitutions"];
        assert_eq!(
            subs["ExtractFunctionArn"]["Fn::GetAtt"][0],
            format!("{id}ExtractFunction")
        );
        assert_eq!(subs["LoadFunctionArn"]["Fn::GetAtt"][0], format!("{id}LoadFunction"));
        // Its role: exactly its own two functions, its own executions, the queue.
        let role = format!("{id}StateMachineRole");
        assert_eq!(
            actions(&t, &role),
            [
                "lambda:InvokeFunction",
                "states:StartExecution",
                "states:ListExecutions",
                "sqs:SendMessage"
            ]
        );
        let statements = &r[role.as_str()]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
        let functions: Vec<&str> = statements[0]["Resource"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| f["Fn::GetAtt"][0].as_str().unwrap())
            .collect();
        assert_eq!(functions, [format!("{id}ExtractFunction"), format!("{id}LoadFunction")]);
        let own = serde_yaml::to_string(&statements[1]["Resource"]).unwrap();
        assert!(
            own.contains(&format!(":stateMachine:${{AWS::StackName}}-{name}")),
            "{own}"
        );
        assert_eq!(
            machine["StateMachineName"]["Fn::Sub"],
            format!("${{AWS::StackName}}-{name}")
        );
    }
    // Secrets only as ARNs the functions resolve.
    let described = t["Parameters"]["SecretArns"]["Description"].as_str().unwrap();
    assert!(described.contains("COINCAP_TOKEN (required)"), "{described}");
    assert!(r["DeadLetterQueue"].is_mapping() && r["CoincapExtractFunctionErrorsAlarm"].is_mapping());
    assert_eq!(
        r["CoincapLoadFunction"]["Properties"]["VpcConfig"]["Fn::If"][0],
        "InVpc"
    );
}

#[test]
fn the_diagram_draws_what_deploy_creates() {
    let dir = tempfile::tempdir().unwrap();
    let (_, t) = template(&["coincap"], dir.path());
    let drawio = dir.path().join("coincap.drawio");
    Sluice::new(["diagram", "pipelines/coincap.yaml", "-o", drawio.to_str().unwrap()])
        .run()
        .success();
    let xml = std::fs::read_to_string(&drawio).unwrap();
    for id in [
        "StagingBucket",
        "CoincapExtractFunction",
        "CoincapLoadFunction",
        "CoincapSchedule",
        "CoincapStateMachine",
    ] {
        assert!(t["Resources"][id].is_mapping(), "the template creates {id}");
        assert!(xml.contains(id), "the diagram shows {id}");
    }
}

/// The highest `GLIBC_x.y` version `objdump -T` lists for a binary.
fn objdump_glibc(binary: &Path) -> Vec<u32> {
    let out = std::process::Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .expect("objdump runs (binutils: apt-get install binutils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| v.split('.').map(|p| p.parse::<u32>().ok()).collect::<Option<Vec<_>>>())
        .max()
        .expect("a glibc-linked binary")
}

#[test]
fn the_package_bootstrap_runs_on_amazon_linux_2023() {
    let Some(bootstrap) = std::env::var_os("SLUICE_TEST_BOOTSTRAP") else {
        panic!("SLUICE_TEST_BOOTSTRAP must name a sluice built for glibc 2.34: pip install cargo-zigbuild ziglang, then cargo zigbuild --target x86_64-unknown-linux-gnu.2.34 --bin sluice and set it to target/x86_64-unknown-linux-gnu/debug/sluice (bash .ci/run does both)");
    };
    let dir = tempfile::tempdir().unwrap();
    // A CA bundle to carry beside the specs: the test cluster's own, when it has one.
    let ca = pg::tls_ca();
    let bundle = dir.path().join("ca.pem");
    match &ca {
        Some(ca) => std::fs::copy(ca, &bundle).map(|_| ()).unwrap(),
        None => std::fs::write(&bundle, "not checked: TEST_DATABASE_URL names the server\n").unwrap(),
    }
    let spec = |n: &str| root().join(format!("pipelines/{n}.yaml")).into_os_string();
    let (rm, cc) = (spec("rickandmorty"), spec("coincap"));
    let package = |specs: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["package".as_ref()];
        args.extend(specs);
        args.extend([
            "--include".as_ref(),
            bundle.as_os_str(),
            "--bootstrap".as_ref(),
            &bootstrap,
        ]);
        let run = Sluice::new(args).dir(dir.path()).run().success();
        let name = run
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("CodeKey=<prefix/>"))
            .unwrap_or_else(|| panic!("no CodeKey in: {}", run.stdout))
            .to_string();
        (run, name)
    };
    // Named by its content: the same inputs make the same file, others another.
    let (run, name) = package(&[&rm, &cc]);
    assert!(
        run.stdout.contains("bootstrap (x86_64, needs glibc 2."),
        "{}",
        run.stdout
    );
    let hex = name
        .strip_prefix("sluice-lambda-")
        .and_then(|n| n.strip_suffix(".zip"))
        .unwrap();
    assert_eq!(hex.len(), 12, "{name}");
    let zip_path = dir.path().join(&name);
    let bytes = std::fs::read(&zip_path).unwrap();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&bytes);
    assert!(
        run.stdout.contains(&format!("sha256 {}", ::hex::encode(digest))),
        "{}",
        run.stdout
    );
    assert!(::hex::encode(digest).starts_with(hex));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(package(&[&rm, &cc]).1, name, "the same inputs, a second later");
    assert_eq!(std::fs::read(&zip_path).unwrap(), bytes);
    let (_, other) = package(&[&cc]);
    assert_ne!(other, name, "other inputs, another name");

    // The template for that package: it must run exactly the specs deployed; its name and
    // architecture become the template's defaults.
    let deploy = |specs: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["deploy".as_ref(), "aws".as_ref()];
        args.extend(specs);
        args.extend(["--package".as_ref(), zip_path.as_os_str()]);
        Sluice::new(args).dir(dir.path()).run()
    };
    let t: serde_yaml::Value = serde_yaml::from_str(&deploy(&[&rm, &cc]).success().stdout).unwrap();
    assert_eq!(t["Parameters"]["CodeKey"]["Default"], name.as_str());
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "x86_64");
    let refused = deploy(&[&cc]).failure(1);
    assert!(
        refused
            .stderr
            .contains("it also runs pipelines/rickandmorty.yaml, which was not given"),
        "{}",
        refused.stderr
    );

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "bootstrap",
            "pipelines/rickandmorty.yaml",
            "pipelines/coincap.yaml",
            "pipelines/ca.pem"
        ]
    );
    for spec in ["rickandmorty", "coincap"] {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name(&format!("pipelines/{spec}.yaml")).unwrap(), &mut text).unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(root().join(format!("pipelines/{spec}.yaml"))).unwrap()
        );
    }
    // Unpacked as Lambda unpacks it: the task root.
    let task = dir.path().join("task");
    zip.extract(&task).unwrap();
    let unpacked = task.join("bootstrap");
    assert_eq!(
        zip.by_name("bootstrap").unwrap().unix_mode().map(|m| m & 0o777),
        Some(0o755)
    );
    let glibc = objdump_glibc(&unpacked);
    assert!(
        glibc.as_slice() <= [2, 34].as_slice(),
        "the bootstrap needs GLIBC_{glibc:?}"
    );
    std::fs::set_permissions(&unpacked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let version = std::process::Command::new(&unpacked).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );

    // The packaged bootstrap serves an invocation from its task root, loading over TLS
    // verified against the bundle it carries.
    match &ca {
        None => eprintln!("NOTE: TEST_DATABASE_URL is set, so the packaged CA bundle is not checked against a server"),
        Some(_) => {
            let (api, s3, runtime) = (ApiServer::start(), S3Server::start(), RuntimeApi::start());
            s3.bucket("lake");
            let db = pg::fresh_database().replace("127.0.0.1", "localhost");
            let url = format!(
                "{db}?sslmode=verify-full&sslrootcert={}",
                task.join("pipelines/ca.pem").display()
            );
            let logs = tempfile::tempdir().unwrap();
            let mut child = std::process::Command::new(&unpacked)
                .envs(runtime.env())
                .envs(s3.env())
                .env("LAMBDA_TASK_ROOT", &task)
                .env("SLUICE_STAGING", "s3://lake/sluice")
                .env("DATABASE_URL", &url)
                .env("COINCAP_BASE_URL", format!("{}/v3", api.base))
                .env("COINCAP_TOKEN", "k")
                .env_remove("SLUICE_SPECS")
                .current_dir(&task)
                .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
                .spawn()
                .unwrap();
            let out = runtime.outcome(
                &runtime.invoke(json!({"pipeline": "coincap", "step": "run"}), LONG),
                LONG,
            );
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(out.kind, "response", "{:?}", out.body);
            assert!(
                out.body["loaded"]["tables"][0]["rows"].as_u64().unwrap() > 0,
                "{:?}",
                out.body
            );
        }
    }

    // This machine's own build links a newer glibc: packaging it is refused, with how to
    // build one that runs there.
    let host = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let host_zip = dir.path().join("host.zip");
    let args: [&std::ffi::OsStr; 4] = [
        "package".as_ref(),
        "pipelines/coincap.yaml".as_ref(),
        "-o".as_ref(),
        host_zip.as_os_str(),
    ];
    let run = Sluice::new(args).run();
    if objdump_glibc(&host).as_slice() > [2, 34].as_slice() {
        let run = run.failure(1);
        assert!(
            run.stderr
                .contains("but AWS Lambda's provided.al2023 has 2.34; build one for it with `cargo zigbuild"),
            "{}",
            run.stderr
        );
        assert!(!host_zip.exists());
    } else {
        run.success();
    }
}

/// A stack deployed into moto's CloudFormation by `tests/moto_stack.py`: the staging
/// bucket's name, and per function logical id its environment and its role's credentials.
struct Stack {
    out: Value,
}

impl Stack {
    /// Deploy `template` running `package`, then update it to run `next`.
    fn deploy(moto: &Moto, template: &Path, (package, next): (&Path, &Path), secret: &Value) -> Stack {
        let run = std::process::Command::new(tool("python"))
            .arg(root().join("tests/moto_stack.py"))
            .args([&moto.endpoint, template.to_str().unwrap(), package.to_str().unwrap()])
            .arg(secret.to_string())
            .arg(next)
            .output()
            .expect("python from the test venv runs");
        assert!(
            run.status.success(),
            "deploying into moto failed:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        Stack {
            out: serde_json::from_slice(&run.stdout).unwrap(),
        }
    }

    fn bucket(&self) -> &str {
        self.out["bucket"].as_str().unwrap()
    }

    /// Start function `id` as Lambda would: its environment, its role's credentials.
    fn start(
        &self,
        id: &str,
        moto: &Moto,
        specs: &Path,
        logs: &Path,
        change: &[(&str, Option<&str>)],
    ) -> (RuntimeApi, Background) {
        let f = &self.out["functions"][id];
        assert!(
            f.is_object(),
            "the stack has no function {id}: {}",
            self.out["functions"]
        );
        let runtime = RuntimeApi::start();
        let mut cmd = Sluice::new(["lambda"])
            .envs(runtime.env())
            .env("SLUICE_SPECS", specs)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto.endpoint)
            .dir(logs);
        for part in ["env", "credentials"] {
            for (k, v) in f[part].as_object().unwrap() {
                if !change.iter().any(|(c, _)| c == k) {
                    cmd = cmd.env(k, v.as_str().unwrap());
                }
            }
        }
        for (k, v) in change {
            if let Some(v) = v {
                cmd = cmd.env(k, v);
            }
        }
        let child = cmd.spawn(logs);
        (runtime, child)
    }
}

/// Invoke `event` on function `id` of `stack` and give back its outcome.
fn invoke_on(
    stack: &Stack,
    id: &str,
    moto: &Moto,
    specs: &Path,
    event: Value,
    change: &[(&str, Option<&str>)],
) -> crate::support::lambda::Outcome {
    let logs = tempfile::tempdir().unwrap();
    let (runtime, f) = stack.start(id, moto, specs, logs.path(), change);
    let out = runtime.outcome(&runtime.invoke(event, LONG), LONG);
    drop(f);
    out
}

#[test]
fn the_stack_deploys_into_moto_and_every_pipeline_runs_under_its_own_roles() {
    let (api, moto) = (ApiServer::start(), Moto::start());
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("pipelines");
    std::fs::create_dir(&specs).unwrap();
    let files = [
        "pipelines/rickandmorty.yaml",
        "pipelines/coincap.yaml",
        "examples/specs/jsonplaceholder_comments.yaml",
    ];
    for f in files {
        std::fs::copy(root().join(f), specs.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let template = dir.path().join("template.yaml");
    let mut args = vec!["deploy", "aws"];
    args.extend(files);
    args.extend(["-o", template.to_str().unwrap()]);
    Sluice::new(args).run().success();
    // moto stores the code, it does not run it: any zip will do as the package, and a
    // second one as the next version, deployed the README's way (a new CodeKey).
    let zipped = |name: &str, text: &[u8]| {
        let path = dir.path().join(name);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file("bootstrap", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, text).unwrap();
        zip.finish().unwrap();
        path
    };
    let package = zipped(
        "sluice-lambda-0123456789ab.zip",
        b"the tests run the sluice binary itself",
    );
    let next = zipped("sluice-lambda-ba9876543210.zip", b"a newer build");
    let db = pg::fresh_database();
    let secret = json!({
        "DATABASE_URL": db,
        "COINCAP_TOKEN": "moto-coincap-key",
        "RICKANDMORTY_BASE_URL": format!("{}/api", api.base),
        "COINCAP_BASE_URL": format!("{}/v3", api.base),
        "JSONPLACEHOLDER_API": format!("{}/jsonplaceholder", api.base),
    });
    let stack = Stack::deploy(&moto, &template, (&package, &next), &secret);
    // The update reached every function: its code is the new package's, and says so.
    use sha2::Digest;
    let code_sha = |p: &Path| {
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            sha2::Sha256::digest(std::fs::read(p).unwrap()),
        )
    };
    let updated = stack.out["updated"].as_object().unwrap();
    assert_eq!(updated.len(), 6, "{updated:?}");
    for (id, u) in updated {
        assert_eq!(u["before"][0], code_sha(&package), "{id}");
        assert_eq!(u["after"][0], code_sha(&next), "{id}: {u}");
        let described = u["after"][1].as_str().unwrap();
        assert!(
            described.ends_with("(package sluice/sluice-lambda-ba9876543210.zip)"),
            "{described}"
        );
    }
    // Only what moto cannot evaluate was changed: the secrets statements' resources.
    let adapted = stack.out["adapted"].as_array().unwrap();
    assert_eq!(adapted.len(), 6, "{adapted:?}");
    for a in adapted {
        assert_eq!(a["sid"], "ReadSecrets");
        assert!(a["resource"].to_string().contains(":secretsmanager:us-east-1:"), "{a}");
    }
    // Each pipeline's state machine, and the roles it and its schedule run as.
    for id in ["Jsonplaceholder", "Rickandmorty", "Coincap"] {
        for r in ["StateMachine", "StateMachineRole"] {
            let physical = &stack.out["stack"][format!("{id}{r}")];
            assert!(
                physical.as_str().is_some_and(|p| !p.is_empty()),
                "{id}{r}: {}",
                stack.out["stack"]
            );
        }
    }
    let machine = stack.out["stack"]["CoincapStateMachine"].as_str().unwrap();
    assert!(machine.ends_with(":stateMachine:sluice-coincap"), "{machine}");
    let functions = stack.out["functions"].as_object().unwrap();
    let description = functions["CoincapLoadFunction"]["description"].as_str().unwrap();
    assert!(
        description.ends_with("(package sluice/sluice-lambda-ba9876543210.zip)"),
        "{description}"
    );

    // Each pipeline: the schedule's event on its extract function, then the manifest's
    // S3 event on its load function, each under its own role.
    let invoke =
        |id: &str, event: Value, change: &[(&str, Option<&str>)]| invoke_on(&stack, id, &moto, &specs, event, change);
    let bucket = stack.bucket().to_string();
    let mut manifests = HashMap::new();
    for (id, name) in [
        ("Jsonplaceholder", "jsonplaceholder"),
        ("Rickandmorty", "rickandmorty"),
        ("Coincap", "coincap"),
    ] {
        let out = invoke(
            &format!("{id}ExtractFunction"),
            json!({"pipeline": name, "step": "extract"}),
            &[],
        );
        assert_eq!(out.kind, "response", "extract {name}: {:?}", out.body);
        let key = format!("sluice/{}", out.body["extracted"]["manifest"].as_str().unwrap());
        let event = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key}}});
        let out = invoke(&format!("{id}LoadFunction"), event.clone(), &[]);
        assert_eq!(out.kind, "response", "load {name}: {:?}", out.body);
        manifests.insert(name, event);
    }
    let comments: u64 = pg::scalar(&db, "SELECT count(*) FROM jsonplaceholder.comment")
        .unwrap()
        .parse()
        .unwrap();
    let posts: u64 = pg::scalar(&db, "SELECT count(*) FROM jsonplaceholder.post")
        .unwrap()
        .parse()
        .unwrap();
    assert!(comments > posts && posts > 0, "{posts} posts, {comments} comments");
    assert!(pg::scalar(&db, "SELECT count(*) FROM rickandmorty.character").unwrap() != "0");
    assert!(pg::scalar(&db, "SELECT count(*) FROM coincap.exchange_snapshot").unwrap() != "0");

    // `run` on the extract function: its role reads what it staged.
    let out = invoke(
        "JsonplaceholderExtractFunction",
        json!({"pipeline": "jsonplaceholder", "step": "run"}),
        &[],
    );
    assert_eq!(out.kind, "response", "run: {:?}", out.body);

    // A load function takes no extraction, and a function no other pipeline's event.
    let out = invoke(
        "CoincapLoadFunction",
        json!({"pipeline": "coincap", "step": "run"}),
        &[],
    );
    assert_eq!(out.body["errorType"], "Sluice.BadEvent", "{:?}", out.body);
    let out = invoke(
        "CoincapExtractFunction",
        json!({"pipeline": "rickandmorty", "step": "extract"}),
        &[],
    );
    assert_eq!(out.body["errorType"], "Sluice.BadEvent", "{:?}", out.body);
    // And even without that check, IAM holds each role to its own pipeline's objects.
    let unchecked = [("SLUICE_PIPELINE", None), ("SLUICE_FUNCTION", None)];
    let out = invoke(
        "CoincapExtractFunction",
        json!({"pipeline": "rickandmorty", "step": "extract", "resources": ["episode"]}),
        &unchecked,
    );
    assert_eq!(out.kind, "error", "{:?}", out.body);
    let message = out.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("access denied"), "{message}");
    let out = invoke("CoincapLoadFunction", manifests["rickandmorty"].clone(), &unchecked);
    assert_eq!(out.kind, "error", "{:?}", out.body);
    let message = out.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("access denied"), "{message}");
}

#[test]
fn a_specs_runtime_sizes_its_functions_and_a_key_outside_its_prefix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("pipelines/coincap.yaml")).unwrap();
    let sized = dir.path().join("coincap.yaml");
    std::fs::write(
        &sized,
        text.replace(
            "  schedule: rate(5 minutes)\n",
            "  schedule: rate(5 minutes)\n  memory: 2GiB\n  timeout: 5m\n  ephemeral_storage: 1GiB\n  concurrency: 2\n",
        ),
    )
    .unwrap();
    let out = Sluice::new(["deploy", "aws", sized.to_str().unwrap()]).run().success();
    let t: serde_yaml::Value = serde_yaml::from_str(&out.stdout).unwrap();
    for f in ["CoincapExtractFunction", "CoincapLoadFunction"] {
        let props = &t["Resources"][f]["Properties"];
        assert_eq!(props["MemorySize"], 2048, "{f}");
        assert_eq!(props["Timeout"], 300, "{f}");
        assert_eq!(props["EphemeralStorage"]["Size"], 1024, "{f}");
    }
    assert_eq!(
        t["Resources"]["CoincapExtractFunction"]["Properties"]["ReservedConcurrentExecutions"],
        2
    );

    // What Lambda would refuse is refused when the spec is validated.
    for (bad, says) in [
        ("  memory: 100MiB\n", "memory must be whole MiB from 128MiB to 10240MiB"),
        ("  timeout: 20m\n", "timeout must be whole seconds from 1s to 15m"),
        (
            "  ephemeral_storage: 64MiB\n",
            "ephemeral_storage must be whole MiB from 512MiB",
        ),
        ("  concurrency: 0\n", "concurrency must be at least 1"),
    ] {
        std::fs::write(
            &sized,
            text.replace(
                "  schedule: rate(5 minutes)\n",
                &format!("  schedule: rate(5 minutes)\n{bad}"),
            ),
        )
        .unwrap();
        let v = Sluice::new(["validate", sized.to_str().unwrap()]).run().failure(1);
        assert!(v.stdout.contains(says), "{bad}: {}", v.stdout);
    }

    // Each role is held to `<prefix>/<pipeline>/`: a key template that leaves it cannot deploy.
    std::fs::write(
        &sized,
        text.replace(
            "key: \"{pipeline}/{resource}/{run_time:%Y/%m/%d/%H/%M}/{run_id}-{part}.jsonl.gz\"",
            "key: \"{resource}/{pipeline}-{run_id}-{part}.jsonl.gz\"",
        ),
    )
    .unwrap();
    let v = Sluice::new(["validate", sized.to_str().unwrap()]).run();
    assert_eq!(v.code, 0, "the key is valid: {}", v.stdout);
    let d = Sluice::new(["deploy", "aws", sized.to_str().unwrap()]).run().failure(1);
    assert!(d.stderr.contains("must begin with `{pipeline}/`"), "{}", d.stderr);
}

#[test]
fn an_export_job_polled_on_lambda_stops_before_the_invocation_deadline() {
    let (api, s3, runtime) = (ApiServer::start(), S3Server::start(), RuntimeApi::start());
    let (dir, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A job that never finishes, polled every half second with half an hour to go.
    let spec = std::fs::read_to_string(root().join("examples/specs/salesforce_bulk.yaml"))
        .unwrap()
        .replace("FROM Contact", "FROM Slow");
    std::fs::write(dir.path().join("salesforce_bulk.yaml"), spec).unwrap();
    let _f = function(&runtime, &s3, &api, dir.path(), logs.path())
        .env("SALESFORCE_URL", format!("{}/sfbulk", api.base))
        .env("SALESFORCE_TOKEN", crate::support::files::SF_TOKEN)
        .env("DATABASE_URL", pg::fresh_database())
        .env("SLUICE_DEADLINE_RESERVE", "1s")
        .spawn(logs.path());
    let started = std::time::Instant::now();
    let id = runtime.invoke(
        json!({"pipeline": "salesforce_bulk", "step": "extract"}),
        Duration::from_secs(4),
    );
    let out = runtime.outcome(&id, LONG);
    let took = started.elapsed();
    // Stopped while the job ran: checkpointed with nothing staged, the answer says to go on.
    assert_eq!(out.kind, "response", "{:?}", out.body);
    assert_eq!(out.body["status"], "continue", "{:?}", out.body);
    assert_eq!(out.body["staged"]["records"], 0, "{:?}", out.body);
    assert!(
        took < Duration::from_secs(4),
        "the answer came after the deadline: {took:?}"
    );
    // The job was polled until the reserve, and no further.
    let polls = api.job_polls();
    assert_eq!(polls.len(), 1);
    assert!((2..=6).contains(&polls[0]), "{polls:?}");
}
