//! `sluice run` and `sluice load` against the ephemeral PostgreSQL, the replay API and
//! the S3 server.

use std::path::Path;

use serde_json::Value;

use crate::extract::fixture_appearances;
use crate::support::api::ApiServer;
use crate::support::s3::S3Server;
use crate::support::{pg, Run, Sluice};

struct Env {
    api: ApiServer,
    db: String,
    staging: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            api: ApiServer::start(),
            db: pg::fresh_database(),
            staging: tempfile::tempdir().unwrap(),
        }
    }

    fn sluice<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Sluice {
        Sluice::new(args)
            .api(&self.api)
            .env("SLUICE_STAGING", self.staging.path())
            .env("DATABASE_URL", &self.db)
    }

    fn run(&self, spec: &str) -> Run {
        self.sluice(["run", spec]).run()
    }

    fn count(&self, table: &str) -> i64 {
        pg::scalar(&self.db, &format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .parse()
            .unwrap()
    }

    fn scalar(&self, sql: &str) -> Option<String> {
        pg::scalar(&self.db, sql)
    }

    /// A copy of a spec with text replaced, in a temp dir that lives as long as `dir`.
    fn variant(&self, dir: &Path, spec: &str, name: &str, edits: &[(&str, &str)]) -> String {
        let mut text = std::fs::read_to_string(crate::support::root().join(spec)).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "`{from}` not in {spec}");
            text = text.replace(from, to);
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

/// A digest of every table's rows (without the run id column), to compare states.
fn snapshot(db: &str, tables: &[&str]) -> Vec<String> {
    tables
        .iter()
        .map(|t| {
            let cols = pg::query(
                db,
                &format!(
                    "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) FROM information_schema.columns \
                     WHERE table_schema || '.' || table_name = '{t}' AND column_name <> '_sluice_run_id'"
                ),
            );
            let cols = cols[0][0].clone().unwrap();
            pg::scalar(db, &format!("SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) || ':' || count(*) FROM (SELECT {cols} FROM {t}) r")).unwrap()
        })
        .collect()
}

const RM_TABLES: [&str; 4] = [
    "rickandmorty.location",
    "rickandmorty.episode",
    "rickandmorty.character",
    "rickandmorty.appearance",
];

#[test]
fn rick_and_morty_end_to_end() {
    let env = Env::new();
    let run = env.run("pipelines/rickandmorty.yaml").success();
    assert!(run.stdout.contains("character        character"), "{}", run.stdout);
    assert_eq!(env.count("rickandmorty.character"), 826);
    assert_eq!(env.count("rickandmorty.location"), 126);
    assert_eq!(env.count("rickandmorty.episode"), 51);
    assert_eq!(env.count("rickandmorty.appearance"), fixture_appearances());
    assert_eq!(
        env.scalar("SELECT name FROM rickandmorty.character WHERE character_id = 1")
            .as_deref(),
        Some("Rick Sanchez")
    );
    assert_eq!(
        env.scalar("SELECT origin_id::text FROM rickandmorty.character WHERE character_id = 1")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        env.scalar("SELECT pg_typeof(created)::text FROM rickandmorty.character WHERE character_id = 1")
            .as_deref(),
        Some("timestamp with time zone")
    );
    assert_eq!(
        env.scalar("SELECT to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') FROM rickandmorty.character WHERE character_id = 1").as_deref(),
        Some("2017-11-04 18:48:46.250")
    );
    assert_eq!(
        env.scalar("SELECT air_date::text FROM rickandmorty.episode WHERE episode_id = 1")
            .as_deref(),
        Some("2013-12-02")
    );
    // Unknown origins are null, `""` types are null, never the string "".
    assert_eq!(env.count("rickandmorty.character WHERE origin_id IS NULL"), 300);
    assert_eq!(env.count("rickandmorty.character WHERE type = ''"), 0);
    // Every foreign key holds.
    assert_eq!(env.count("rickandmorty.character c LEFT JOIN rickandmorty.location l ON l.location_id = c.origin_id WHERE c.origin_id IS NOT NULL AND l.location_id IS NULL"), 0);
    assert_eq!(
        env.count(
            "rickandmorty.appearance a LEFT JOIN rickandmorty.episode e USING (episode_id) WHERE e.episode_id IS NULL"
        ),
        0
    );
    // The ledger has the run.
    let run_id = run.run_id();
    assert_eq!(
        env.scalar(&format!("SELECT status FROM _sluice.runs WHERE run_id = '{run_id}'"))
            .as_deref(),
        Some("loaded")
    );
    assert_eq!(
        env.count(&format!("rickandmorty.character WHERE _sluice_run_id = '{run_id}'")),
        826
    );

    // Running again with merge changes nothing but the run id.
    let before = snapshot(&env.db, &RM_TABLES);
    let again = env.run("pipelines/rickandmorty.yaml").success();
    assert_eq!(snapshot(&env.db, &RM_TABLES), before);
    let line = again
        .stdout
        .lines()
        .find(|l| l.starts_with("character        character"))
        .unwrap()
        .to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[2..7], ["826", "826", "0", "826", "0"], "{line}");
}

#[test]
fn coincap_end_to_end_keeps_numbers_exact_and_appends_snapshots() {
    let env = Env::new();
    env.run("pipelines/coincap.yaml").success();
    assert_eq!(env.count("coincap.exchange_snapshot"), 73);
    let row = pg::query(&env.db, "SELECT percent_total_volume::text, volume_usd::text, rank::text, socket::text, updated = to_timestamp(1652488911.546) FROM coincap.exchange_snapshot WHERE exchange_id = 'lbank'");
    assert_eq!(
        row[0],
        [
            Some("43.140867627459137071000000000000000000".to_string()),
            Some("37476515691.0469439604158353".to_string()),
            Some("1".to_string()),
            Some("false".to_string()),
            Some("t".to_string())
        ]
    );
    assert_eq!(
        env.count(
            "coincap.exchange_snapshot WHERE volume_usd IS NULL AND percent_total_volume IS NULL AND socket IS NULL"
        ),
        7
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.run("pipelines/coincap.yaml").success();
    assert_eq!(env.count("coincap.exchange_snapshot"), 146);
    assert_eq!(
        env.count("(SELECT DISTINCT snapshot_time FROM coincap.exchange_snapshot) s"),
        2
    );
}

#[test]
fn loading_a_run_twice_is_refused_unless_forced() {
    let env = Env::new();
    let extracted = env.sluice(["extract", "pipelines/rickandmorty.yaml"]).run().success();
    let run_id = extracted.run_id();
    env.sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id])
        .run()
        .success();
    let before = snapshot(&env.db, &RM_TABLES);
    let again = env
        .sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id])
        .run()
        .failure(1);
    assert!(again.stderr.contains("already loaded"), "{}", again.stderr);
    env.sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id, "--force"])
        .run()
        .success();
    assert_eq!(
        snapshot(&env.db, &RM_TABLES),
        before,
        "a forced merge load duplicates nothing"
    );
    assert_eq!(env.count("_sluice.runs WHERE status = 'loaded'"), 2);
    // --latest is the default.
    env.sluice(["load", "pipelines/rickandmorty.yaml", "--latest"])
        .run()
        .failure(1);
}

#[test]
fn a_run_without_a_manifest_is_refused() {
    let env = Env::new();
    let extracted = env
        .sluice(["extract", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .run()
        .success();
    let run_id = extracted.run_id();
    std::fs::remove_file(
        env.staging
            .path()
            .join(format!("rickandmorty/_manifests/{run_id}.json")),
    )
    .unwrap();
    let run = env
        .sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id])
        .run()
        .failure(1);
    assert!(run.stderr.contains("has no manifest"), "{}", run.stderr);
    assert!(run.stderr.contains(&run_id));
}

#[test]
fn replace_leaves_exactly_the_last_runs_rows() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let spec = env.variant(
        dir.path(),
        "tests/fixtures/specs/types.yaml",
        "replace.yaml",
        &[("write: merge", "write: replace")],
    );
    let first = env.run(&spec).success();
    let second = env.run(&spec).success();
    assert_eq!(env.count("types.item"), 3);
    let last = second.run_id();
    assert_ne!(first.run_id(), last);
    assert_eq!(env.count(&format!("types.item WHERE _sluice_run_id = '{last}'")), 3);
}

#[test]
fn every_column_type_and_transform_round_trips() {
    let env = Env::new();
    env.run("tests/fixtures/specs/types.yaml").success();
    let row = |id: i32| {
        pg::query(
            &env.db,
            &format!(
                "SELECT label_trim, label_lower, label_upper, n_str::text, big::text, dec::text, dbl::text, flag::text, day::text, \
                 to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), to_char(ts_naive AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
                 to_char(ms AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), to_char(s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
                 url_id::text, empty, obj::text, tags::text, source, loaded_by, (run = _sluice_run_id)::text, (run_at IS NOT NULL)::text \
                 FROM types.item WHERE id = {id}"
            ),
        )
        .remove(0)
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        row(1),
        [
            s("Mixed Case"),
            s("mixed case"),
            s("  MIXED CASE  "),
            s("42"),
            s("9007199254740993"),
            s("123456789012345678901234567890.123456789"),
            s("2.5"),
            s("true"),
            s("2021-09-05"),
            s("2017-11-04 18:48:46.250"),
            s("2017-11-04 18:48:46"),
            s("2022-05-14 00:41:51.546"),
            s("2022-05-14 00:41:51"),
            s("17"),
            None,
            s(r#"{"a": [1, 2, {"b": null}]}"#),
            s(r#"["x", "y"]"#),
            s("types-api"),
            s("types"),
            s("true"),
            s("true"),
        ]
    );
    let r2 = row(2);
    assert!(r2[..15].iter().all(Option::is_none), "nulls stay null: {r2:?}");
    assert_eq!(r2[15], None);
    assert_eq!(r2[16], s("[]"));
    let r3 = row(3);
    assert_eq!(
        r3[3..10],
        [
            s("7"),
            s("-5"),
            s("-0.5"),
            s("1e+300"),
            s("false"),
            s("2013-12-02"),
            s("2021-01-01 10:00:00.000")
        ]
    );
    assert_eq!(
        (r3[11].clone(), r3[12].clone(), r3[13].clone(), r3[14].clone()),
        (
            s("1970-01-01 00:00:00.000"),
            s("1970-01-01 00:00:00"),
            None,
            s("not empty")
        )
    );
    assert_eq!(r3[15], s("\"just text\""));
}

#[test]
fn a_bad_record_fails_the_whole_load_and_names_it() {
    let env = Env::new();
    env.run("pipelines/rickandmorty.yaml").success();
    let before = snapshot(&env.db, &RM_TABLES);
    let dir = tempfile::tempdir().unwrap();
    // The last resource maps `name` from a field that is not there: null in a NOT NULL column.
    let spec = env.variant(
        dir.path(),
        "pipelines/rickandmorty.yaml",
        "rickandmorty.yaml",
        &[(
            "- {name: name, type: text, path: $.name, nullable: false}\n        - {name: status",
            "- {name: name, type: text, path: $.nickname, nullable: false}\n        - {name: status",
        )],
    );
    let run = env.run(&spec).failure(1);
    assert!(
        run.stderr.contains("resource `character`, object `rickandmorty/character/")
            && run.stderr.contains("record 1: column `name` of table `character`: null in a NOT NULL column (value null); the load was rolled back"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&env.db, &RM_TABLES), before, "a failed load changes nothing");
    assert_eq!(env.count("_sluice.runs WHERE status = 'failed'"), 1);
    let error = env
        .scalar("SELECT error FROM _sluice.runs WHERE status = 'failed'")
        .unwrap();
    assert!(error.contains("column `name`"), "{error}");
}

#[test]
fn skip_and_quarantine_keep_the_good_records() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let base = [("path: /static/types", "path: /static/types_bad")];
    let fail = env.variant(dir.path(), "tests/fixtures/specs/types.yaml", "fail.yaml", &base);
    let run = env.run(&fail).failure(1);
    assert!(
        run.stderr
            .contains("record 2: column `n_str` of table `item`: \"forty-two\" is not an integer"),
        "{}",
        run.stderr
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'types'")
            .as_deref(),
        Some("0"),
        "rolled back, DDL included"
    );

    let skip = env.variant(
        dir.path(),
        "tests/fixtures/specs/types.yaml",
        "skip.yaml",
        &[base[0], ("on_error: fail", "on_error: skip")],
    );
    let run = env.run(&skip).success();
    let line = run.stdout.lines().find(|l| l.starts_with("item ")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &fields[2..7],
        ["4", "2", "2", "0", "2"],
        "records, rows, inserted, updated, rejected: {line}"
    );
    assert_eq!(env.count("types.item"), 2);
    assert_eq!(env.count("_sluice.rejects"), 0);

    let quarantine = env.variant(
        dir.path(),
        "tests/fixtures/specs/types.yaml",
        "q.yaml",
        &[base[0], ("on_error: fail", "on_error: quarantine")],
    );
    env.run(&quarantine).success();
    let rejects = pg::query(&env.db, "SELECT record_number::text, column_name, value, reason, record->>'label' FROM _sluice.rejects ORDER BY record_number");
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rejects,
        [
            vec![
                s("2"),
                s("n_str"),
                s("\"forty-two\""),
                s("\"forty-two\" is not an integer"),
                s("bad number")
            ],
            vec![
                s("4"),
                s("n_str"),
                s("\"99999999999\""),
                s("\"99999999999\" is out of range for integer"),
                s("too big")
            ],
        ]
    );
}

#[test]
fn schema_grows_by_nullable_columns_and_refuses_other_changes() {
    let env = Env::new();
    env.run("pipelines/rickandmorty.yaml").success();
    let dir = tempfile::tempdir().unwrap();
    let grown = env.variant(
        dir.path(),
        "pipelines/rickandmorty.yaml",
        "grown.yaml",
        &[("- {name: url, type: text, path: $.url}\n        - {name: created, type: timestamptz, path: $.created}\n\n  - name: episode", "- {name: url, type: text, path: $.url}\n        - {name: created, type: timestamptz, path: $.created}\n        - {name: resident_count, type: jsonb, path: \"$.residents[*]\"}\n\n  - name: episode")],
    );
    env.run(&grown).success();
    assert_eq!(
        env.count("rickandmorty.location WHERE jsonb_array_length(resident_count) = 0"),
        32
    );

    let before = snapshot(&env.db, &RM_TABLES);
    let changed = env.variant(
        dir.path(),
        "pipelines/rickandmorty.yaml",
        "changed.yaml",
        &[("{name: air_date, type: date", "{name: air_date, type: text")],
    );
    let run = env.run(&changed).failure(1);
    assert!(
        run.stderr
            .contains("table `episode`: column `air_date` is date in the database but text in the spec"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("table `location`: column `resident_count` exists in the database but not in the spec"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&env.db, &RM_TABLES), before);
}

#[test]
fn dry_run_prints_mapped_rows_and_writes_nothing() {
    let env = Env::new();
    let run = env
        .sluice([
            "run",
            "pipelines/rickandmorty.yaml",
            "--dry-run",
            "--limit",
            "2",
            "--resource",
            "character",
        ])
        .run()
        .success();
    let rows: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows[0]["_table"], "character");
    assert_eq!(rows[0]["name"], "Rick Sanchez");
    assert_eq!(rows[0]["origin_id"], 1);
    assert_eq!(rows.iter().filter(|r| r["_table"] == "appearance").count(), 51 + 51);
    assert_eq!(std::fs::read_dir(env.staging.path()).unwrap().count(), 0);
    assert_eq!(
        env.scalar("SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ('rickandmorty', '_sluice')")
            .as_deref(),
        Some("0")
    );
}

#[test]
fn a_bad_database_url_names_host_and_database_but_not_the_password() {
    let env = Env::new();
    let run = env
        .sluice(["run", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .env("DATABASE_URL", "postgres://app:hunter2-secret@127.0.0.1:1/warehouse")
        .run()
        .failure(1);
    assert!(
        run.stderr
            .contains("cannot connect to database `warehouse` on 127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2-secret"));
}

#[test]
fn run_through_s3_staging() {
    let env = Env::new();
    let s3 = S3Server::start();
    s3.bucket("lake");
    env.sluice(["run", "pipelines/rickandmorty.yaml"])
        .env("SLUICE_STAGING", "s3://lake/sluice")
        .envs(s3.env())
        .run()
        .success();
    assert_eq!(env.count("rickandmorty.character"), 826);
    // And a later load of the latest run reads it back from S3.
    env.sluice(["load", "pipelines/rickandmorty.yaml", "--latest", "--force"])
        .env("SLUICE_STAGING", "s3://lake/sluice")
        .envs(s3.env())
        .run()
        .success();
    assert_eq!(env.count("_sluice.runs WHERE status = 'loaded'"), 2);
}

#[test]
fn a_connection_killed_during_copy_changes_nothing() {
    let env = Env::new();
    env.run("pipelines/rickandmorty.yaml").success();
    let before = snapshot(&env.db, &RM_TABLES);
    // Stage a large run of the same shape, then kill the loader's connection as soon as
    // its COPY is seen.
    let staged = env.sluice(["extract", "pipelines/rickandmorty.yaml"]).run().success();
    let run_id = staged.run_id();
    let manifest_path = env
        .staging
        .path()
        .join(format!("rickandmorty/_manifests/{run_id}.json"));
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let character = manifest["resources"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == "character")
        .unwrap();
    let object = character["objects"][0].clone();
    // The same object listed many times: a long COPY without a large fixture.
    character["objects"] = Value::Array(vec![object; 400]);
    character["records"] = Value::from(400 * 826);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let killer_db = env.db.clone();
    let killer = std::thread::spawn(move || {
        for _ in 0..2000 {
            let killed = pg::query(
                &killer_db,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = current_database() AND query LIKE 'COPY%'",
            );
            if !killed.is_empty() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    });
    let run = env
        .sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id])
        .run();
    assert!(killer.join().unwrap(), "the COPY was never seen");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("COPY into `character`") || run.stderr.contains("connection"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&env.db, &RM_TABLES), before);
}

#[test]
fn tls_connections_encrypt_and_verify_the_server() {
    let env = Env::new();
    let Some(ca) = pg::tls_ca() else {
        eprintln!("NOTE: TEST_DATABASE_URL is set, so the TLS test has no certificate of its own to check against");
        return;
    };
    let spec = ["run", "pipelines/rickandmorty.yaml", "--resource", "episode"];
    // require: encrypted, certificate not checked (libpq semantics).
    env.sluice(spec)
        .env("DATABASE_URL", format!("{}?sslmode=require", env.db))
        .run()
        .success();
    // verify-full against the cluster's CA, by host name.
    let by_name = env.db.replace("127.0.0.1", "localhost");
    let verified = format!("{by_name}?sslmode=verify-full&sslrootcert={}", ca.display());
    env.sluice(spec).env("DATABASE_URL", &verified).run().success();
    // verify-full against the system roots: the self-signed certificate is refused.
    let run = env
        .sluice(spec)
        .env("DATABASE_URL", format!("{by_name}?sslmode=verify-full"))
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("cannot connect to database `") && run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    assert_eq!(env.count("_sluice.runs WHERE status = 'loaded'"), 2);
}

#[test]
fn a_run_whose_extraction_fails_midway_loads_nothing() {
    let env = Env::new();
    env.run("pipelines/rickandmorty.yaml").success();
    let before = snapshot(&env.db, &RM_TABLES);
    // `run` loads parts while they are extracted; a fault late in the last resource must
    // still leave every table as it was.
    env.api
        .fault("/api/character?page=30", crate::support::api::Fault::Html, 1);
    let run = env.run("pipelines/rickandmorty.yaml").failure(1);
    assert!(run.stderr.contains("resource `character`, page 30"), "{}", run.stderr);
    assert_eq!(snapshot(&env.db, &RM_TABLES), before);
    assert_eq!(env.count("_sluice.runs WHERE status = 'loaded'"), 1);
    let error = env
        .scalar("SELECT error FROM _sluice.runs WHERE status = 'failed'")
        .unwrap();
    assert!(error.contains("the extraction failed"), "{error}");
}

#[test]
fn key_value_connection_strings_work_too() {
    let env = Env::new();
    let url = url::Url::parse(&env.db).unwrap();
    let kv = format!(
        "host={} port={} user={} dbname={} connect_timeout=10",
        url.host_str().unwrap(),
        url.port().unwrap(),
        url.username(),
        url.path().trim_start_matches('/')
    );
    env.sluice(["run", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .env("DATABASE_URL", kv)
        .run()
        .success();
    assert_eq!(env.count("rickandmorty.episode"), 51);
}
