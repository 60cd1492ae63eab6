//! Failing early and loudly: nothing silent, every message says what to do.

use serde_json::Value;

use crate::support::api::ApiServer;
use crate::support::{pg, root, Sluice};

fn spec_with(dir: &std::path::Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(root().join("pipelines/rickandmorty.yaml")).unwrap();
    assert!(text.contains(from));
    let path = dir.join("rickandmorty.yaml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_misspelt_path_fails_the_run_with_a_suggestion_unless_optional() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sluice = |args: &[&str]| {
        Sluice::new(args)
            .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
            .env("SLUICE_STAGING", staging.path())
            .env("DATABASE_URL", &db)
    };
    let typo = spec_with(dir.path(), "path: $.status,", "path: $.stauts,");

    let dry = sluice(&["run", &typo, "--dry-run", "--resource", "character"])
        .run()
        .failure(1);
    let line = |column: &str| {
        dry.stderr
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(column))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no coverage line for {column}: {}", dry.stderr))
    };
    assert!(
        dry.stderr
            .contains("coverage of resource `character` (20 records fetched):"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        line("status"),
        "character status $.stauts 0/20 (all null) ← matched nothing"
    );
    assert_eq!(line("name"), "character name $.name 20/20 \"Rick Sanchez\"");

    let run = sluice(&["run", &typo]).run().failure(1);
    assert!(
        run.stderr.contains(
            "resource `character`: column `status` of table `character`: `path: $.stauts` matched nothing in 826 rows; did you mean `$.status`? (if the API really leaves it out, mark the column `optional: true`); nothing was loaded"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        pg::scalar(&db, "SELECT to_regclass('rickandmorty.character')::text"),
        None,
        "nothing was committed"
    );

    let optional = spec_with(dir.path(), "path: $.status,", "path: $.stauts, optional: true,");
    let run = sluice(&["run", &optional]).run().success();
    assert!(
        run.stdout
            .contains("  character.status: path matched in 0 of 826 rows (null in the others)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) FROM rickandmorty.character WHERE status IS NULL").as_deref(),
        Some("826")
    );
    let resources: Value = serde_json::from_str(
        &pg::scalar(&db, "SELECT resources::text FROM _sluice.runs WHERE status = 'loaded'").unwrap(),
    )
    .unwrap();
    let character = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "character")
        .unwrap();
    assert_eq!(character["matched"]["status"], 0);
    assert_eq!(character["matched"]["name"], 826);
}

#[test]
fn a_records_path_that_misses_says_what_the_page_is() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    api.put("bare", r#"[{"id": 1}, {"id": 2}]"#, &[]);
    api.put("data", r#"{"meta": {"n": 2}, "data": [{"id": 1}, {"id": 2}]}"#, &[]);
    api.put("results", r#"{"results": [{"id": 1}, {"id": 2}]}"#, &[]);
    let cases = [
        (
            "bare",
            "$.results[*]",
            "`records: $.results[*]` matches nothing in the response from API/dyn/bare, which is an array of 2 objects; did you mean `records: $[*]`?",
        ),
        (
            "data",
            "$.results[*]",
            "`records: $.results[*]` matches nothing in the response from API/dyn/data, which is an object with keys `meta`, `data`; did you mean `records: $.data[*]`?",
        ),
        (
            "results",
            "$.results",
            "`records: $.results` selects one array (of 2 items) rather than the records in it; did you mean `records: $.results[*]`?",
        ),
    ];
    for (page, records, expected) in cases {
        let spec = format!(
            "version: 1\nname: items\nsource: {{base_url: \"${{API_BASE}}\"}}\nstaging: {{location: \"${{SLUICE_STAGING}}\"}}\nwarehouse: {{url: \"${{DATABASE_URL}}\", schema: items}}\nresources:\n  - name: items\n    path: /dyn/{page}\n    records: \"{records}\"\n    paginate: {{type: none}}\n    table:\n      name: item\n      columns:\n        - {{name: id, type: integer, path: $.id}}\n"
        );
        let path = dir.path().join("items.yaml");
        std::fs::write(&path, spec).unwrap();
        let run = Sluice::new(["extract", path.to_str().unwrap(), "--dry-run"])
            .env("API_BASE", &api.base)
            .env("SLUICE_STAGING", dir.path())
            .run()
            .failure(1);
        let expected = expected.replace("API", &api.base);
        assert!(
            run.stderr.contains(&format!("resource `items`, page 1: {expected}")),
            "{page}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("not JSON"), "{}", run.stderr);
    }
}

#[test]
fn s3_errors_are_one_line_that_says_what_to_do() {
    use crate::support::s3::S3Server;
    let api = ApiServer::start();
    let s3 = S3Server::start();
    s3.bucket("lake");
    // Port 1: nothing listens there. (A port freed by a dropped listener can be taken
    // by another test's server meanwhile.)
    let closed = "127.0.0.1:1";
    let cases: [(&str, usize, &str, &str); 4] = [
        (
            "s3://nope/raw",
            9,
            "",
            "bucket `nope` does not exist; create it or correct `staging.location`",
        ),
        (
            "s3://lake/raw",
            1,
            "wrong-secret-value",
            "the AWS secret key does not match the access key id; check AWS_SECRET_ACCESS_KEY",
        ),
        (
            "s3://lake/raw",
            0,
            "unknown-key-id",
            "the server does not know this AWS access key id; check AWS_ACCESS_KEY_ID",
        ),
        (
            "s3://lake/raw",
            3,
            "",
            "cannot reach the S3 endpoint; check `staging.endpoint` (or AWS_ENDPOINT_URL_S3) and the network",
        ),
    ];
    for (location, var, value, expected) in cases {
        let mut env = s3.env();
        if var < env.len() {
            env[var].1 = if var == 3 {
                format!("http://{closed}")
            } else {
                value.to_string()
            };
        }
        let run = Sluice::new(["extract", "pipelines/rickandmorty.yaml", "--resource", "episode"])
            .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
            .env("SLUICE_STAGING", location)
            .envs(env)
            .run()
            .failure(1);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("{expected}\n{}", run.stderr));
        assert!(line.len() < 400, "{line}");
        assert!(
            !run.stderr.contains("SdkBody") && !run.stderr.contains("ServiceError"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn refused_credentials_name_the_setting_and_variable() {
    use crate::support::api::Fault;
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    api.fault("/v3/exchanges", Fault::Status(401), 10);
    let run = Sluice::new(["extract", "pipelines/coincap.yaml"])
        .env("COINCAP_BASE_URL", format!("{}/v3", api.base))
        .env("COINCAP_TOKEN", "expired-key-value")
        .env("SLUICE_STAGING", dir.path())
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("failed with HTTP 401")
            && run
                .stderr
                .contains("check `source.auth`: the bearer token from environment variable `COINCAP_TOKEN`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("expired-key-value"));
}

#[test]
fn loading_a_run_that_does_not_exist_lists_the_latest() {
    use crate::support::api::Fault;
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let sluice = |args: &[&str]| {
        Sluice::new(args)
            .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
            .env("SLUICE_STAGING", staging.path())
            .env("DATABASE_URL", &db)
    };
    let none = sluice(&["load", "pipelines/rickandmorty.yaml", "--run", "nope"])
        .run()
        .failure(1);
    assert!(
        none.stderr
            .contains("there is no staged run `nope` of `rickandmorty` in file://")
            && none.stderr.contains("it holds no complete run yet"),
        "{}",
        none.stderr
    );
    let first = sluice(&["extract", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .run()
        .success()
        .run_id();
    let second = sluice(&["extract", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .run()
        .success()
        .run_id();
    let none = sluice(&["load", "pipelines/rickandmorty.yaml", "--run", "nope"])
        .run()
        .failure(1);
    // Ids sort by their second, then at random within it: both are listed.
    assert!(
        none.stderr
            .contains(&format!("the latest complete runs are: {second}, {first}"))
            || none
                .stderr
                .contains(&format!("the latest complete runs are: {first}, {second}")),
        "{}",
        none.stderr
    );
    // A failed run loads nothing and says nothing was loaded.
    api.fault("/api/character?page=30", Fault::Html, 1);
    let run = sluice(&["run", "pipelines/rickandmorty.yaml"]).run().failure(1);
    assert!(!run.stderr.contains("table loaded"), "{}", run.stderr);
    let run = sluice(&["run", "pipelines/rickandmorty.yaml"]).run().success();
    assert_eq!(run.stderr.matches("table loaded").count(), 4, "{}", run.stderr);
}

#[test]
fn preflight_fails_before_any_api_request() {
    use crate::support::s3::S3Server;
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    // Port 1: nothing listens there. (A port freed by a dropped listener can be taken
    // by another test's server meanwhile.)
    let closed = "127.0.0.1:1";
    let base = |spec: &str| {
        Sluice::new(["run", spec])
            .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
            .env("COINCAP_BASE_URL", format!("{}/v3", api.base))
            .env("SLUICE_STAGING", staging.path())
    };
    // Every missing variable at once.
    let run = base("pipelines/coincap.yaml").run().failure(1);
    assert!(
        run.stderr
            .contains("an environment variable this step needs is not set: `COINCAP_TOKEN` (for source.auth.token)"),
        "{}",
        run.stderr
    );
    // PostgreSQL down.
    let run = base("pipelines/rickandmorty.yaml")
        .env("DATABASE_URL", format!("postgres://postgres@{closed}/db"))
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("preflight check of the warehouse failed, so nothing was read from the API: cannot connect to database `db` on 127.0.0.1:"),
        "{}",
        run.stderr
    );
    // A missing bucket.
    let s3 = S3Server::start();
    let run = base("pipelines/rickandmorty.yaml")
        .env("DATABASE_URL", &db)
        .env("SLUICE_STAGING", "s3://nope/raw")
        .envs(s3.env())
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("preflight check of the staging failed, so nothing was read from the API: S3 list of `s3://nope/raw/rickandmorty/` failed: bucket `nope` does not exist"),
        "{}",
        run.stderr
    );
    // A live table the spec cannot load into.
    pg::execute(
        &db,
        "CREATE SCHEMA rickandmorty; CREATE TABLE rickandmorty.episode (episode_id text PRIMARY KEY)",
    );
    let run = base("pipelines/rickandmorty.yaml")
        .env("DATABASE_URL", &db)
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("preflight check of the warehouse failed")
            && run
                .stderr
                .contains("column `episode_id` is text in the database but integer in the spec"),
        "{}",
        run.stderr
    );
    assert!(api.requests().is_empty(), "the API was called: {:?}", api.requests());

    // `sluice check` runs the same checks, and with --api one request.
    let ok_db = pg::fresh_database();
    let check = Sluice::new(["check", "pipelines/rickandmorty.yaml", "--api"])
        .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
        .env("SLUICE_STAGING", staging.path())
        .env("DATABASE_URL", &ok_db)
        .run()
        .success();
    assert_eq!(
        check.stdout,
        "pipelines/rickandmorty.yaml: ok (environment, warehouse, staging, API)\n"
    );
    assert_eq!(api.requests().len(), 1);
    let check = Sluice::new(["check", "pipelines/coincap.yaml"])
        .env("SLUICE_STAGING", staging.path())
        .run()
        .failure(1);
    assert!(
        check.stderr.contains("`COINCAP_TOKEN` (for source.auth.token)"),
        "{}",
        check.stderr
    );
    // Without DATABASE_URL, the reference pipelines' default: an SQLite file, created
    // with its folder.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::copy(
        crate::support::root().join("pipelines/rickandmorty.yaml"),
        dir.path().join("pipelines/rickandmorty.yaml"),
    )
    .unwrap();
    Sluice::new(["check", "pipelines/rickandmorty.yaml"])
        .env("SLUICE_STAGING", staging.path())
        .dir(dir.path())
        .run()
        .success();
    assert!(dir.path().join(".sluice/rickandmorty.db").is_file());
}

#[test]
fn query_params_may_be_yaml_numbers_and_booleans() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("items.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: items\nsource: {base_url: \"${API_BASE}\", params: {active: true}}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"postgres://postgres@127.0.0.1:5432/db\", schema: items}\nresources:\n  - name: items\n    path: /page\n    params: {n: 7, ratio: 0.5}\n    records: $.results[*]\n    paginate: {type: none}\n    table:\n      name: item\n      columns:\n        - {name: id, type: integer, path: $.id}\n",
    )
    .unwrap();
    let run = Sluice::new(["extract", spec.to_str().unwrap(), "--dry-run"])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", dir.path())
        .run()
        .success();
    assert_eq!(run.stdout, "{\"id\":7}\n");
    assert_eq!(api.requests()[0].target, "/page?active=true&n=7&ratio=0.5");
}

#[test]
fn progress_bars_on_a_terminal_keep_the_log_lines() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Slowed down so that the bars are drawn.
    let spec = spec_with(
        dir.path(),
        "  base_url: ${RICKANDMORTY_BASE_URL:-https://rickandmortyapi.com/api}\n",
        "  base_url: ${RICKANDMORTY_BASE_URL:-https://rickandmortyapi.com/api}\n  rate_limit: {requests_per_second: 25}\n",
    );
    let sluice = env!("CARGO_BIN_EXE_sluice");
    // `script` gives sluice a pseudo-terminal as stderr, as a person's shell would.
    let out = std::process::Command::new("script")
        .args([
            "-qfec",
            &format!("'{sluice}' extract '{spec}' --resource location --resource episode"),
            "/dev/null",
        ])
        .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
        .env("SLUICE_STAGING", dir.path().join("staging"))
        .env_remove("SLUICE_LOG")
        .output()
        .expect("`script` (util-linux) runs sluice under a pseudo-terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("extract resource=location: "), "no bar:\n{screen}");
    assert!(screen.contains(" pages, ") && screen.contains(" records/s"), "{screen}");
    assert!(
        screen.contains("resource extracted") && screen.contains("extract finished"),
        "log lines hidden:\n{screen}"
    );
}
