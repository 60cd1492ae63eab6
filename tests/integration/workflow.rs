//! The state machine `sluice deploy aws` writes, run by the executor of the test support
//! (`support::sfn`) over the bootstrap behind the Runtime API test server: a run longer
//! than one invocation goes on until it is done, then loads; a schedule that fires while
//! a run is under way starts none; a backfill extracts its windows at once and loads them
//! in window order; a transient Lambda error is retried, any other is recorded in the
//! dead-letter queue and fails the execution.

use std::path::Path;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use crate::support::api::{ApiServer, Fault};
use crate::support::lambda::RuntimeApi;
use crate::support::reach::report_row;
use crate::support::s3::S3Server;
use crate::support::sfn::{definition, Ended, Executor};
use crate::support::{pg, root, Background, Sluice};

const LONG: Duration = Duration::from_secs(180);

/// The template `sluice deploy aws` writes for `spec`, and its state machine's
/// definition, the functions named `extract` and `load`.
fn deployed(spec: &Path, machine: &str) -> Value {
    let out = spec.with_extension("template.yaml");
    Sluice::new(["deploy", "aws", spec.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .run()
        .success();
    let template: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    definition(
        &template,
        machine,
        &[
            ("ExtractFunctionArn", "extract"),
            ("LoadFunctionArn", "load"),
            (
                "DeadLetterQueueUrl",
                "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
            ),
        ],
    )
}

/// A function of pipeline `pipeline` (`step`: extract or load) on `runtime`, as the
/// template sets it up, staging in `s3://lake/sluice`.
fn function(runtime: &RuntimeApi, s3: &S3Server, specs: &Path, (pipeline, step): (&str, &str), logs: &Path) -> Sluice {
    s3.bucket("lake");
    Sluice::new(["lambda"])
        .envs(runtime.env())
        .envs(s3.env())
        .env("SLUICE_STAGING", "s3://lake/sluice")
        .env("SLUICE_SPECS", specs)
        .env("SLUICE_PIPELINE", pipeline)
        .env("SLUICE_FUNCTION", step)
        .dir(logs)
}

fn payloads(ex: &Executor, function: &str) -> Vec<Value> {
    ex.invoked
        .lock()
        .unwrap()
        .iter()
        .filter(|i| i.function == function)
        .map(|i| i.payload.clone())
        .collect()
}

fn ended(ex: &Executor, name: &str) -> (Ended, Vec<String>) {
    let all = ex.executions.lock().unwrap();
    let e = all
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no execution {name}"));
    (e.ended.clone().expect("it ended"), e.states.clone())
}

const PAGES: u64 = 10;

/// A spec reading `PAGES` pages of 20 records from `/dyn/p1`, `/dyn/p2`, ….
fn pages_spec(api: &ApiServer, dir: &Path) -> std::path::PathBuf {
    for p in 1..=PAGES {
        let records: Vec<Value> = (1..=20)
            .map(|i| json!({"id": (p - 1) * 20 + i, "v": format!("page {p}")}))
            .collect();
        let next = (p < PAGES).then(|| format!("{}/dyn/p{}", api.base, p + 1));
        api.put(
            &format!("p{p}"),
            json!({"results": records, "next": next}).to_string(),
            &[],
        );
    }
    let spec = dir.join("pages.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"version: 1
name: pages
source:
  base_url: {base}
staging:
  location: ${{SLUICE_STAGING:-file://.sluice/staging}}
warehouse:
  url: ${{DATABASE_URL}}
  schema: pages
runtime:
  target: aws_lambda
  schedule: rate(1 hour)
resources:
  - name: items
    path: /dyn/p1
    records: $.results[*]
    paginate: {{type: next_url, next: $.next}}
    table:
      name: item
      write: append
      columns:
        - {{name: id, type: integer, path: $.id}}
        - {{name: v, type: text, path: $.v}}
"#,
            base = api.base
        ),
    )
    .unwrap();
    spec
}

/// Pages that take a second each, an invocation of 3.5 s with a 1 s reserve: two pages
/// an invocation (the third is cut at the reserve and asked for again by the next), so
/// ten pages take five invocations. The first execution hands the run over to one named
/// by its run id; a schedule firing meanwhile starts nothing.
#[test]
fn a_run_of_five_invocations_goes_on_in_an_execution_named_by_its_run_id_then_loads() {
    let (api, s3) = (ApiServer::start(), S3Server::start());
    let (extract, load) = (RuntimeApi::start(), RuntimeApi::start());
    let (specs, logs, logs2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let spec = pages_spec(&api, specs.path());
    let machine = deployed(&spec, "PagesStateMachine");
    std::fs::remove_file(spec.with_extension("template.yaml")).unwrap();
    let db = pg::fresh_database();
    let _e: Background = function(&extract, &s3, specs.path(), ("pages", "extract"), logs.path())
        .env("DATABASE_URL", &db)
        .env("SLUICE_DEADLINE_RESERVE", "1s")
        .spawn(logs.path());
    let _l: Background = function(&load, &s3, specs.path(), ("pages", "load"), logs2.path())
        .env("DATABASE_URL", &db)
        .spawn(logs2.path());
    for p in 1..=PAGES {
        api.fault(&format!("/dyn/p{p}"), Fault::Stall(Duration::from_secs(1)), 100);
    }
    let ex = Executor::new(
        machine,
        &[
            ("extract", &extract, Duration::from_millis(3500)),
            ("load", &load, LONG),
        ],
    );
    assert!(ex.start("scheduled-1", json!({})));
    ex.run_one(None);
    // The first invocation read two pages and said to go on: handed over.
    let first = payloads(&ex, "extract");
    assert_eq!(first, vec![json!({"pipeline": "pages", "step": "extract"})]);
    let (end, states) = ended(&ex, "scheduled-1");
    assert!(matches!(end, Ended::Succeeded(_)), "{end:?}");
    assert_eq!(
        states,
        ["Start", "Under way", "Alone", "Extract", "Extracted", "Hand over"]
    );
    let run_id = {
        let all = ex.executions.lock().unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        all[1].name.clone()
    };
    assert_eq!(run_id.len(), 23, "the execution is named by the run id: {run_id}");
    // The next schedule fires while the run is under way: it starts nothing.
    assert!(ex.start("scheduled-2", json!({})));
    ex.run_one(Some("scheduled-2"));
    let (end, states) = ended(&ex, "scheduled-2");
    assert!(matches!(end, Ended::Succeeded(_)), "{end:?}");
    assert_eq!(states, ["Start", "Under way", "Alone", "Skipped"]);
    ex.run();

    let (end, states) = ended(&ex, &run_id);
    let Ended::Succeeded(out) = end else { panic!("{end:?}") };
    assert_eq!(out["loaded"]["run_id"], json!(run_id), "{out}");
    let extracts = payloads(&ex, "extract");
    let resume = json!({"pipeline": "pages", "step": "extract", "resume": run_id});
    let answers: Vec<_> = ex.invoked.lock().unwrap().iter().map(|i| i.answer.clone()).collect();
    assert_eq!(
        extracts.len(),
        5,
        "{answers:#?}\n{:#?}",
        api.requests().iter().map(|r| r.target.clone()).collect::<Vec<_>>()
    );
    assert!(extracts[1..].iter().all(|p| *p == resume), "{extracts:#?}");
    assert_eq!(
        payloads(&ex, "load"),
        vec![json!({"pipeline": "pages", "step": "load", "run_id": run_id})]
    );
    assert_eq!(
        states,
        ["Start", "Resumed", "Go on", "Gone on", "Go on", "Gone on", "Go on", "Gone on", "Go on", "Gone on", "Load"]
    );
    // Every record once; each cut page asked for again: 10 pages and 4 again.
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(DISTINCT id) || '/' || min(id) || '/' || max(id) FROM pages.item"
        )
        .as_deref(),
        Some("200/200/1/200")
    );
    let asked = api.requests().iter().filter(|r| r.target.starts_with("/dyn/p")).count();
    assert_eq!(asked, 14);
    assert!(ex.dead_letters.lock().unwrap().is_empty());
    assert_eq!(ex.executions.lock().unwrap().len(), 3);
}

/// The report spec, its windows read three at a time.
fn report_spec(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("examples/specs/report_windows.yaml")).unwrap();
    let text = format!("{text}runtime:\n  target: aws_lambda\n  concurrency: 3\n");
    let spec = dir.join("adreport.yaml");
    std::fs::write(&spec, text).unwrap();
    spec
}

/// A backfill of 2023 in calendar months: 12 windows, each its own run, extracted three at
/// a time by three sandboxes, then loaded one by one in window order; the warehouse holds
/// exactly the server's 365 days. Then: throttling is retried, and a failure is recorded
/// in the dead-letter queue and fails the execution.
#[test]
fn a_backfill_of_12_windows_extracts_three_at_a_time_and_loads_them_in_order() {
    let (api, s3) = (ApiServer::start(), S3Server::start());
    let (extract, load) = (RuntimeApi::start(), RuntimeApi::start());
    let (specs, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec = report_spec(specs.path());
    let machine = deployed(&spec, "AdreportStateMachine");
    std::fs::remove_file(spec.with_extension("template.yaml")).unwrap();
    assert_eq!(machine["States"]["Extract windows"]["MaxConcurrency"], 3);
    let db = pg::fresh_database();
    let sandboxes: Vec<Background> = (0..4)
        .map(|i| {
            let dir = logs.path().join(i.to_string());
            std::fs::create_dir(&dir).unwrap();
            let (runtime, step) = if i < 3 { (&extract, "extract") } else { (&load, "load") };
            function(runtime, &s3, specs.path(), ("adreport", step), &dir)
                .env("DATABASE_URL", &db)
                .env("REPORT_API", &api.base)
                .env("REPORT_TOKEN", "report-token")
                .spawn(&dir)
        })
        .collect();
    // Slow pages, so that the windows overlap.
    api.fault("/report/daily", Fault::Stall(Duration::from_millis(150)), 1000);
    let ex = Executor::new(machine, &[("extract", &extract, LONG), ("load", &load, LONG)]);
    assert!(ex.start(
        "backfill-2023",
        json!({"backfill": {"from": "2023-01-01", "to": "2023-12-31"}})
    ));
    ex.run();
    let (end, _) = ended(&ex, "backfill-2023");
    assert!(matches!(end, Ended::Succeeded(_)), "{end:?}\n{}", sandboxes[0].stdout());

    let extracts = payloads(&ex, "extract");
    assert_eq!(
        extracts[0],
        json!({"pipeline": "adreport", "step": "windows", "backfill": {"from": "2023-01-01", "to": "2023-12-31"}})
    );
    let windows = &extracts[1..];
    assert_eq!(windows.len(), 12, "{windows:#?}");
    assert_eq!(ex.most_at_once(), 3);
    let mut run_ids: Vec<(u64, String)> = windows
        .iter()
        .map(|w| (w["window"].as_u64().unwrap(), w["run_id"].as_str().unwrap().to_string()))
        .collect();
    run_ids.sort();
    // Loaded in window order, which is the run ids' order.
    let loads: Vec<String> = payloads(&ex, "load")
        .iter()
        .map(|p| p["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(loads, run_ids.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
    let mut sorted = loads.clone();
    sorted.sort();
    assert_eq!(loads, sorted);
    // Exactly the server's days of 2023.
    let rows: Vec<Vec<String>> = pg::query(
        &db,
        "SELECT date::text, impressions::text, clicks::text FROM adreport.daily_report ORDER BY date",
    )
    .into_iter()
    .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
    .collect();
    let days: Vec<NaiveDate> = NaiveDate::from_ymd_opt(2023, 1, 1)
        .unwrap()
        .iter_days()
        .take_while(|d| d.year() == 2023)
        .collect();
    assert_eq!(
        rows.len(),
        365,
        "{:#?}",
        ex.invoked
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.function == "load")
            .map(|i| i.answer.clone())
            .collect::<Vec<_>>()
    );
    for (row, day) in rows.iter().zip(&days) {
        let want = report_row(*day);
        assert_eq!(
            (
                row[0].as_str(),
                row[1].parse::<i64>().unwrap(),
                row[2].parse::<i64>().unwrap()
            ),
            (
                want["date"].as_str().unwrap(),
                want["impressions"].as_i64().unwrap(),
                want["clicks"].as_i64().unwrap()
            )
        );
    }
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) FROM _sluice.runs WHERE pipeline = 'adreport' AND status = 'loaded'"
        )
        .as_deref(),
        Some("12")
    );
    assert_eq!(
        pg::scalar(&db, "SELECT value FROM _sluice.state WHERE pipeline = 'adreport'").as_deref(),
        Some("2024-01-01")
    );

    // Throttled twice, the load is made a third time.
    let before = ex.invoked.lock().unwrap().len();
    ex.throttle(2);
    let last = loads.last().unwrap().clone();
    assert!(ex.start("throttled", json!({"resume": "20990101T000000Z-000000"})));
    ex.run();
    let invoked: Vec<_> = ex.invoked.lock().unwrap()[before..].to_vec();
    assert_eq!(invoked.len(), 3, "{invoked:#?}");
    assert_eq!(invoked[0].answer, Err("Lambda.TooManyRequestsException".to_string()));
    assert_eq!(invoked[1].answer, Err("Lambda.TooManyRequestsException".to_string()));
    // A run to go on with that has no checkpoint: not retried, recorded, failed.
    let (end, states) = ended(&ex, "throttled");
    let Ended::Failed { error, cause } = end else {
        panic!("{end:?}")
    };
    assert!(error.starts_with("Sluice."), "{error}: {cause}");
    assert!(cause.contains("20990101T000000Z-000000"), "{cause}");
    assert_eq!(states, ["Start", "Resumed", "Go on", "Record failure", "Failed"]);
    let letters = ex.dead_letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["pipeline"], "adreport");
    assert_eq!(letters[0]["error"]["Error"], json!(error));
    assert_eq!(letters[0]["input"], json!({"resume": "20990101T000000Z-000000"}));
    // A backfill whose range is back to front fails before any extraction.
    assert!(ex.start(
        "backwards",
        json!({"backfill": {"from": "2023-02-01", "to": "2023-01-01"}})
    ));
    ex.run();
    let (end, _) = ended(&ex, "backwards");
    assert!(
        matches!(&end, Ended::Failed { error, cause } if error == "Sluice.BadEvent" && cause.contains("is after its `to`")),
        "{end:?}"
    );
    assert_eq!(ex.dead_letters.lock().unwrap().len(), 2);
    assert!(!loads.is_empty() && last.len() == 23);
}
