//! The warehouse contract: the same cases, run on PostgreSQL and on SQLite. Whatever the
//! warehouse, a load gives exact counts, is refused when repeated, replaces and merges
//! (nested rows included), quarantines bad records, evolves the schema only by nullable
//! columns, leaves the database as it was when it fails, and serialises concurrent runs.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::extract::fixture_appearances;
use crate::support::api::ApiServer;
use crate::support::{pg, Run, Sluice};

/// A warehouse under test.
enum Wh {
    Postgres(String),
    /// The file, and the folder that holds it while the case runs.
    Sqlite(PathBuf, #[allow(dead_code)] tempfile::TempDir),
}

impl Wh {
    fn postgres() -> Wh {
        Wh::Postgres(pg::fresh_database())
    }

    fn sqlite() -> Wh {
        let dir = tempfile::tempdir().unwrap();
        Wh::Sqlite(dir.path().join("warehouse.db"), dir)
    }

    fn url(&self) -> String {
        match self {
            Wh::Postgres(url) => url.clone(),
            Wh::Sqlite(path, _) => format!("sqlite://{}", path.display()),
        }
    }

    fn is_sqlite(&self) -> bool {
        matches!(self, Wh::Sqlite(..))
    }

    /// A table's name in SQL: SQLite has no schemas.
    fn t(&self, schema: &str, table: &str) -> String {
        match self {
            Wh::Postgres(_) => format!("{schema}.\"{table}\""),
            Wh::Sqlite(..) => format!("\"{table}\""),
        }
    }

    /// sluice's own tables: `_sluice.runs` or `_sluice_runs`.
    fn own(&self, table: &str) -> String {
        match self {
            Wh::Postgres(_) => format!("_sluice.{table}"),
            Wh::Sqlite(..) => format!("_sluice_{table}"),
        }
    }

    fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Wh::Postgres(url) => pg::query(url, sql),
            Wh::Sqlite(path, _) => {
                let c = rusqlite::Connection::open(path).unwrap();
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
                let n = st.column_count();
                st.query_map([], |r| (0..n).map(|i| Ok(text(r.get_ref(i)?))).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        }
    }

    fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    fn count(&self, from: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {from}"))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Every row of the tables (without `_sluice_run_id`), sorted: to compare states.
    fn digest(&self, schema: &str, tables: &[&str]) -> Vec<String> {
        tables
            .iter()
            .map(|t| {
                let cols: Vec<String> = match self {
                    Wh::Postgres(_) => self
                        .query(&format!(
                            "SELECT quote_ident(column_name) FROM information_schema.columns WHERE table_schema = '{schema}' \
                             AND table_name = '{t}' AND column_name <> '_sluice_run_id' ORDER BY ordinal_position"
                        ))
                        .into_iter()
                        .map(|r| r[0].clone().unwrap())
                        .collect(),
                    Wh::Sqlite(..) => self
                        .query(&format!(
                            "SELECT '\"' || name || '\"' FROM pragma_table_info('{t}') WHERE name <> '_sluice_run_id' ORDER BY cid"
                        ))
                        .into_iter()
                        .map(|r| r[0].clone().unwrap())
                        .collect(),
                };
                let mut rows: Vec<String> = self
                    .query(&format!("SELECT {} FROM {}", cols.join(", "), self.t(schema, t)))
                    .into_iter()
                    .map(|r| format!("{r:?}"))
                    .collect();
                rows.sort();
                format!("{t}: {}", rows.join("\n"))
            })
            .collect()
    }
}

fn text(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!("{b:?}")),
    }
}

/// The API, the staging folder and the warehouse of one case.
struct Env {
    api: ApiServer,
    staging: tempfile::TempDir,
    wh: Wh,
    specs: tempfile::TempDir,
}

impl Env {
    fn new(wh: Wh) -> Env {
        Env {
            api: ApiServer::start(),
            staging: tempfile::tempdir().unwrap(),
            wh,
            specs: tempfile::tempdir().unwrap(),
        }
    }

    fn sluice<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Sluice {
        Sluice::new(args)
            .api(&self.api)
            .env("SLUICE_STAGING", self.staging.path())
            .env("DATABASE_URL", self.wh.url())
    }

    fn run(&self, spec: &str) -> Run {
        self.sluice(["run", spec]).run()
    }

    /// A copy of a spec with text replaced.
    fn variant(&self, spec: &str, name: &str, edits: &[(&str, &str)]) -> String {
        let mut text = std::fs::read_to_string(crate::support::root().join(spec)).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "`{from}` not in {spec}");
            text = text.replace(from, to);
        }
        self.write(name, &text)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.specs.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

const RM: &str = "pipelines/rickandmorty.yaml";
const RM_TABLES: [&str; 4] = ["location", "episode", "character", "appearance"];

/// Counts, inserted, updated of a table's line in the run summary.
fn summary(run: &Run, table: &str) -> Vec<String> {
    let line = run
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(table))
        .unwrap_or_else(|| panic!("no line for {table}:\n{}", run.stdout));
    line.split_whitespace().skip(2).take(5).map(String::from).collect()
}

fn exact_counts_and_an_idempotent_rerun(wh: Wh) {
    let env = Env::new(wh);
    let run = env.run(RM).success();
    let wh = &env.wh;
    let t = |name: &str| wh.t("rickandmorty", name);
    assert_eq!(wh.count(&t("character")), 826);
    assert_eq!(wh.count(&t("location")), 126);
    assert_eq!(wh.count(&t("episode")), 51);
    assert_eq!(wh.count(&t("appearance")), fixture_appearances());
    let rick = wh.query(&format!(
        "SELECT name, origin_id, type FROM {} WHERE character_id = 1",
        t("character")
    ));
    assert_eq!(rick, [[Some("Rick Sanchez".into()), Some("1".into()), None]]);
    assert_eq!(wh.count(&format!("{} WHERE origin_id IS NULL", t("character"))), 300);
    // Every foreign key holds.
    assert_eq!(
        wh.count(&format!(
            "{} a LEFT JOIN {} e ON e.episode_id = a.episode_id WHERE e.episode_id IS NULL",
            t("appearance"),
            t("episode")
        )),
        0
    );
    let run_id = run.run_id();
    assert_eq!(
        wh.scalar(&format!(
            "SELECT status FROM {} WHERE run_id = '{run_id}'",
            wh.own("runs")
        ))
        .as_deref(),
        Some("loaded")
    );
    assert_eq!(
        wh.count(&format!("{} WHERE _sluice_run_id = '{run_id}'", t("character"))),
        826
    );
    // Timestamps and dates: PostgreSQL's types, ISO 8601 UTC text in SQLite.
    let (created, air_date) = if wh.is_sqlite() {
        ("created", "air_date")
    } else {
        (
            "to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            "air_date::text",
        )
    };
    assert_eq!(
        wh.scalar(&format!(
            "SELECT {created} FROM {} WHERE character_id = 1",
            t("character")
        ))
        .as_deref(),
        Some("2017-11-04T18:48:46.250000Z")
    );
    assert_eq!(
        wh.scalar(&format!("SELECT {air_date} FROM {} WHERE episode_id = 1", t("episode")))
            .as_deref(),
        Some("2013-12-02")
    );

    // A second run merges: nothing changes but the run id.
    let before = wh.digest("rickandmorty", &RM_TABLES);
    let again = env.run(RM).success();
    assert_eq!(wh.digest("rickandmorty", &RM_TABLES), before);
    assert_eq!(summary(&again, "character"), ["826", "826", "0", "826", "0"]);
}

fn numbers_stay_exact_and_append_adds_snapshots(wh: Wh) {
    let env = Env::new(wh);
    let wh = &env.wh;
    let table = wh.t("coincap", "exchange_snapshot");
    env.run("pipelines/coincap.yaml").success();
    assert_eq!(wh.count(&table), 73);
    let row = wh.query(&format!(
        "SELECT percent_total_volume, volume_usd, rank FROM {table} WHERE exchange_id = 'lbank'"
    ));
    assert_eq!(
        row,
        [[
            Some("43.140867627459137071000000000000000000".to_string()),
            Some("37476515691.0469439604158353".to_string()),
            Some("1".to_string()),
        ]]
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.run("pipelines/coincap.yaml").success();
    assert_eq!(wh.count(&table), 146);
    assert_eq!(wh.count(&format!("(SELECT DISTINCT snapshot_time FROM {table}) s")), 2);
}

fn a_loaded_run_is_refused_unless_forced(wh: Wh) {
    let env = Env::new(wh);
    let wh = &env.wh;
    let run_id = env.sluice(["extract", RM]).run().success().run_id();
    env.sluice(["load", RM, "--run", &run_id]).run().success();
    let before = wh.digest("rickandmorty", &RM_TABLES);
    let again = env.sluice(["load", RM, "--run", &run_id]).run().failure(1);
    assert!(again.stderr.contains("already loaded"), "{}", again.stderr);
    env.sluice(["load", RM, "--run", &run_id, "--force"]).run().success();
    assert_eq!(
        wh.digest("rickandmorty", &RM_TABLES),
        before,
        "a forced merge load duplicates nothing"
    );
    assert_eq!(wh.count(&format!("{} WHERE status = 'loaded'", wh.own("runs"))), 2);
}

fn replace_keeps_exactly_the_last_runs_rows(wh: Wh) {
    let env = Env::new(wh);
    let spec = env.variant(
        "tests/fixtures/specs/types.yaml",
        "replace.yaml",
        &[("write: merge", "write: replace")],
    );
    env.run(&spec).success();
    let last = env.run(&spec).success().run_id();
    let table = env.wh.t("types", "item");
    assert_eq!(env.wh.count(&table), 3);
    assert_eq!(env.wh.count(&format!("{table} WHERE _sluice_run_id = '{last}'")), 3);
}

fn merge_replaces_the_nested_rows_of_a_parent(wh: Wh) {
    let env = Env::new(wh);
    let spec = env.write(
        "items.yaml",
        "version: 1\nname: items\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: items}\nresources:\n  - name: items\n    path: /dyn/items\n    records: $[*]\n    table:\n      name: item\n      write: merge\n      primary_key: [id]\n      columns:\n        - {name: id, type: integer, path: $.id}\n        - {name: name, type: text, path: $.name}\n      nested:\n        - name: tag\n          each: $.tags[*]\n          primary_key: [item_id, tag]\n          columns:\n            - {name: item_id, from_parent: id, references: item.id}\n            - {name: tag, type: text, path: $}\n            - {name: position, meta: index}\n",
    );
    let run = |body: Value| {
        env.api.put("items", body.to_string(), &[]);
        env.run(&spec).success()
    };
    let tags = || {
        env.wh
            .query(&format!(
                "SELECT item_id, tag, position FROM {} ORDER BY item_id, position",
                env.wh.t("items", "tag")
            ))
            .into_iter()
            .map(|r| r.into_iter().map(Option::unwrap).collect::<Vec<_>>().join(":"))
            .collect::<Vec<_>>()
    };
    let first =
        run(json!([{"id": 1, "name": "one", "tags": ["a", "b", "c"]}, {"id": 2, "name": "two", "tags": ["x"]}]));
    assert_eq!(summary(&first, "item"), ["2", "2", "2", "0", "0"]);
    assert_eq!(tags(), ["1:a:0", "1:b:1", "1:c:2", "2:x:0"]);
    // Item 1 lost `b` and was renamed, and came twice: the last record wins, its nested
    // rows included (`z` and `b` of the first one do not stay). Item 2 is not in this run,
    // so its rows stay.
    let second = run(
        json!([{"id": 1, "name": "uno", "tags": ["a", "b", "c", "z"]}, {"id": 1, "name": "one again", "tags": ["a", "c"]}]),
    );
    assert_eq!(summary(&second, "item"), ["2", "2", "0", "1", "0"]);
    assert_eq!(tags(), ["1:a:0", "1:c:1", "2:x:0"]);
    assert_eq!(
        env.wh
            .scalar(&format!("SELECT name FROM {} WHERE id = 1", env.wh.t("items", "item")))
            .as_deref(),
        Some("one again")
    );
    let stats: Value = serde_json::from_str(
        &env.wh
            .scalar(&format!(
                "SELECT resources FROM {} WHERE status = 'loaded' ORDER BY load_id DESC LIMIT 1",
                env.wh.own("runs")
            ))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats[1]["table"], "tag");
    assert_eq!(stats[1]["deleted"], 1, "{stats}");
    run(json!([{"id": 2, "name": "two", "tags": []}]));
    assert_eq!(tags(), ["1:a:0", "1:c:1"]);
}

fn bad_records_are_quarantined(wh: Wh) {
    let env = Env::new(wh);
    let spec = env.variant(
        "tests/fixtures/specs/types.yaml",
        "q.yaml",
        &[
            ("path: /static/types", "path: /static/types_bad"),
            ("on_error: fail", "on_error: quarantine"),
        ],
    );
    let run = env.run(&spec).success();
    assert_eq!(summary(&run, "item"), ["4", "2", "2", "0", "2"]);
    assert_eq!(env.wh.count(&env.wh.t("types", "item")), 2);
    let rejects = env.wh.query(&format!(
        "SELECT record_number, column_name, value, reason FROM {} ORDER BY record_number",
        env.wh.own("rejects")
    ));
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rejects,
        [
            [
                s("2"),
                s("n_str"),
                s("\"forty-two\""),
                s("\"forty-two\" is not an integer")
            ],
            [
                s("4"),
                s("n_str"),
                s("\"99999999999\""),
                s("\"99999999999\" is out of range for integer")
            ],
        ]
    );
}

fn a_failed_load_leaves_the_database_as_it_was(wh: Wh) {
    let env = Env::new(wh);
    env.run(RM).success();
    let wh = &env.wh;
    let before = wh.digest("rickandmorty", &RM_TABLES);
    // Every row is written, then the `references` check before the commit finds the
    // dangling values (character ids up to 826 are no location ids; there are 126
    // locations) and rolls the load back, naming how many rows and an example.
    let spec = env.variant(
        RM,
        "bad_fk.yaml",
        &[(
            "path: $.location.url\n          transform: url_last_segment",
            "path: $.id",
        )],
    );
    let run = env.run(&spec).failure(1);
    assert!(
        run.stderr
            .contains("table `character` column `location_id`: 700 rows refer to no row of `location`")
            && run.stderr.contains("for example `127`")
            && run.stderr.contains("the load was rolled back"),
        "{}",
        run.stderr
    );
    assert_eq!(wh.digest("rickandmorty", &RM_TABLES), before);
    assert_eq!(wh.count(&format!("{} WHERE status = 'failed'", wh.own("runs"))), 1);
    assert_eq!(wh.count(&format!("{} WHERE status = 'loaded'", wh.own("runs"))), 1);
    if wh.is_sqlite() {
        assert_eq!(wh.scalar("PRAGMA integrity_check").as_deref(), Some("ok"));
        assert_eq!(wh.count("pragma_foreign_key_check"), 0);
    }
}

fn the_schema_grows_by_nullable_columns_only(wh: Wh) {
    let env = Env::new(wh);
    let wh = &env.wh;
    env.run(RM).success();
    let grown = env.variant(
        RM,
        "grown.yaml",
        &[("- {name: url, type: text, path: $.url}\n        - {name: created, type: timestamptz, path: $.created}\n\n  - name: episode", "- {name: url, type: text, path: $.url}\n        - {name: created, type: timestamptz, path: $.created}\n        - {name: residents, type: jsonb, path: \"$.residents[*]\"}\n\n  - name: episode")],
    );
    env.run(&grown).success();
    let length = if wh.is_sqlite() {
        "json_array_length"
    } else {
        "jsonb_array_length"
    };
    assert_eq!(
        wh.count(&format!(
            "{} WHERE {length}(residents) = 0",
            wh.t("rickandmorty", "location")
        )),
        32
    );
    let before = wh.digest("rickandmorty", &RM_TABLES);
    let changed = env.variant(
        RM,
        "changed.yaml",
        &[("{name: air_date, type: date", "{name: air_date, type: text")],
    );
    let run = env.run(&changed).failure(1);
    let (date, text) = if wh.is_sqlite() {
        ("DATE TEXT", "TEXT")
    } else {
        ("date", "text")
    };
    for problem in [
        format!("table `episode`: column `air_date` is {date} in the database but {text} in the spec"),
        "table `location`: column `residents` exists in the database but not in the spec".to_string(),
    ] {
        assert!(run.stderr.contains(&problem), "{problem}\n{}", run.stderr);
    }
    assert_eq!(wh.digest("rickandmorty", &RM_TABLES), before);
}

fn the_incremental_state_moves_with_the_data(wh: Wh) {
    let env = Env::new(wh);
    let spec = env.write("dyn.yaml", crate::incremental::SINCE_IN_PATH);
    env.api.put("since-5", r#"{"results": [{"n": 7}, {"n": 9}]}"#, &[]);
    env.api.put("since-9", r#"{"results": [{"n": 9}, {"n": 12}]}"#, &[]);
    env.run(&spec).success();
    let state = env.sluice(["state", &spec]).run().success();
    assert!(
        state.stdout.contains("events") && state.stdout.contains('9'),
        "{}",
        state.stdout
    );
    env.run(&spec).success();
    let asked = env.api.targets_under("/dyn/");
    assert_eq!(asked, ["/dyn/since-5", "/dyn/since-9"]);
    let ns: Vec<String> = env
        .wh
        .query(&format!("SELECT n FROM {} ORDER BY n", env.wh.t("dynamic", "event")))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ns, ["7", "9", "12"]);
    assert_eq!(
        env.wh
            .scalar(&format!(
                "SELECT value FROM {} WHERE resource = 'events'",
                env.wh.own("state")
            ))
            .as_deref(),
        Some("12")
    );
    env.sluice(["state", &spec, "--reset"]).run().success();
    assert_eq!(env.wh.count(&env.wh.own("state")), 0);
}

fn many_parts_load_in_staging_order(wh: Wh) {
    let env = Env::new(wh);
    let spec = env.write(
        "parts.yaml",
        "version: 1\nname: parts\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\", part_size: 1KiB}\nwarehouse: {url: \"${DATABASE_URL}\", schema: parts}\nresources:\n  - name: items\n    path: /dyn/items\n    records: $[*]\n    table:\n      name: item\n      write: merge\n      on_error: quarantine\n      primary_key: [id]\n      columns:\n        - {name: id, type: integer, path: $.id}\n        - {name: name, type: text, path: $.name}\n        - {name: n, type: integer, path: $.n}\n",
    );
    // 600 records over 200 keys, spread over many staged parts (mapped on several
    // threads): the last good record of each key wins; every 97th record is refused.
    let bad = |i: u64| i.is_multiple_of(97);
    let records: Vec<Value> = (0..600u64)
        .map(|i| json!({"id": i % 200, "name": format!("v{i}"), "n": if bad(i) { json!("bad") } else { json!(i) }}))
        .collect();
    env.api.put("items", Value::Array(records).to_string(), &[]);
    let run = env.run(&spec).success();
    assert_eq!(summary(&run, "item"), ["600", "593", "200", "0", "7"]);
    let parts = walk(env.staging.path())
        .into_iter()
        .filter(|p| p.ends_with(".jsonl.gz"))
        .count();
    assert!(parts >= 10, "{parts} parts");
    let names = env.wh.query(&format!(
        "SELECT id, name, n FROM {} ORDER BY id",
        env.wh.t("parts", "item")
    ));
    assert_eq!(names.len(), 200);
    for row in names {
        let id: u64 = row[0].as_deref().unwrap().parse().unwrap();
        let last = (0..3).map(|k| id + 200 * k).filter(|i| !bad(*i)).max().unwrap();
        assert_eq!(row[1..], [Some(format!("v{last}")), Some(last.to_string())], "id {id}");
    }
    let rejects = env
        .wh
        .query(&format!("SELECT value, object_key FROM {}", env.wh.own("rejects")));
    assert_eq!(rejects.len(), 7);
    assert!(rejects.iter().all(|r| r[0].as_deref() == Some("\"bad\"")));
}

/// The pipelines' expectations hold on their data and run in every load; one that fails
/// with `severity: error` rolls the load back, counted with examples, and one that fails
/// with `warn` commits and is kept in the ledger and the summary.
fn expectations_are_checked_before_the_commit(wh: Wh) {
    let env = Env::new(wh);
    env.run(RM).success();
    // Exact decimals compare as numbers: 43.14 is inside `range: {min: 0, max: 100}`.
    env.run("pipelines/coincap.yaml").success();
    let wh = &env.wh;
    let before = wh.digest("rickandmorty", &RM_TABLES);
    let strict = env.variant(
        RM,
        "strict.yaml",
        &[
            (
                "accepted_values: [Alive, Dead, unknown]",
                "accepted_values: [Alive, Dead]",
            ),
            ("expect: {rows: {min: 800}}", "expect: {rows: {min: 800, max: 825}}"),
        ],
    );
    let run = env.sluice(["run", &strict]).run().failure(1);
    for said in [
        "2 expectation(s) failed, so the load was rolled back",
        "table `character` column `status`: 100 rows hold a value outside `accepted_values` [Alive, Dead] (for example `unknown`)",
        "table `character`: holds 826 rows, expected between 800 and 825 (`expect.rows`)",
    ] {
        assert!(run.stderr.contains(said), "`{said}` not in\n{}", run.stderr);
    }
    assert_eq!(wh.digest("rickandmorty", &RM_TABLES), before);
    let error = wh.query(&format!("SELECT error FROM {} WHERE status = 'failed'", wh.own("runs")));
    assert_eq!(error.len(), 1);
    assert!(
        error[0][0]
            .as_deref()
            .unwrap()
            .contains("100 rows hold a value outside"),
        "{error:?}"
    );
    // Warn: the load commits, the summary and the ledger say what failed.
    let lenient = env.variant(
        RM,
        "lenient.yaml",
        &[(
            "expect: {unique: true, matches: \"^S[0-9]{2}E[0-9]{2}$\"}",
            "expect: {matches: \"^S01\", severity: warn}",
        )],
    );
    let run = env.sluice(["run", &lenient]).run().success();
    let said =
        "warning: expectation failed: table `episode` column `episode_code`: 40 rows hold a value that does not match";
    assert!(run.stdout.contains(said), "`{said}` not in\n{}", run.stdout);
    let ledger = wh.query(&format!(
        "SELECT resources FROM {} WHERE status = 'loaded' ORDER BY finished_at DESC",
        wh.own("runs")
    ));
    let tables: serde_json::Value = serde_json::from_str(ledger[0][0].as_deref().unwrap()).unwrap();
    let episode = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "episode")
        .unwrap();
    let kept = &episode["expectations"][0];
    assert_eq!(
        (&kept["column"], &kept["check"], &kept["severity"], &kept["failing"]),
        (&"episode_code".into(), &"matches".into(), &"warn".into(), &40.into()),
        "{tables}"
    );
    assert_eq!(kept["examples"].as_array().unwrap().len(), 3, "{kept}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}

fn concurrent_runs_take_turns(wh: Wh) {
    let env = Env::new(wh);
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| env.run(RM))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The run that started first, if it commits second, is refused: its records may be
    // older than the other's. Either way one load at a time, and never a half of one.
    let mut loaded: i64 = 0;
    for run in runs {
        if run.code == 0 {
            loaded += 1;
        } else {
            assert!(
                run.stderr.contains("would put older records over newer ones"),
                "{}",
                run.stderr
            );
        }
    }
    assert!(loaded >= 1);
    let wh = &env.wh;
    assert_eq!(wh.count(&wh.t("rickandmorty", "character")), 826);
    assert_eq!(wh.count(&format!("{} WHERE status = 'loaded'", wh.own("runs"))), loaded);
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(#[test] fn $case() { super::$case(super::Wh::postgres()) })*
        }
        mod sqlite {
            $(#[test] fn $case() { super::$case(super::Wh::sqlite()) })*
        }
    };
}

contract!(
    exact_counts_and_an_idempotent_rerun,
    numbers_stay_exact_and_append_adds_snapshots,
    a_loaded_run_is_refused_unless_forced,
    replace_keeps_exactly_the_last_runs_rows,
    merge_replaces_the_nested_rows_of_a_parent,
    bad_records_are_quarantined,
    a_failed_load_leaves_the_database_as_it_was,
    expectations_are_checked_before_the_commit,
    the_schema_grows_by_nullable_columns_only,
    concurrent_runs_take_turns,
    the_incremental_state_moves_with_the_data,
    many_parts_load_in_staging_order,
);

/// SQLite only: a writer that holds the file past the busy timeout gets a clear error,
/// and the run changes nothing.
#[test]
fn sqlite_a_locked_database_fails_clearly_after_the_busy_timeout() {
    let env = Env::new(Wh::sqlite());
    env.run(RM).success();
    let Wh::Sqlite(path, _) = &env.wh else { unreachable!() };
    let before = env.wh.digest("rickandmorty", &RM_TABLES);
    let holder = rusqlite::Connection::open(path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let run = env
        .sluice(["run", RM])
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?busy_timeout=300ms", path.display()),
        )
        .run()
        .failure(1);
    assert!(run.stderr.contains("database is locked"), "{}", run.stderr);
    assert!(run.stderr.contains("busy timeout (0.3 s"), "{}", run.stderr);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(env.wh.digest("rickandmorty", &RM_TABLES), before);
    // No `failed` ledger row: writing it would only have waited as long again.
    assert_eq!(env.wh.count(&env.wh.own("runs")), 1);
}

/// The README's first command: with DATABASE_URL unset, the reference pipeline loads into
/// `.sluice/rickandmorty.db` under the working directory.
#[test]
fn sqlite_is_the_zero_set_up_default() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::copy(crate::support::root().join(RM), dir.path().join(RM)).unwrap();
    let run = Sluice::new(["run", RM])
        .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
        .dir(dir.path())
        .run()
        .success();
    let db = dir.path().join(".sluice/rickandmorty.db");
    assert!(run.stdout.contains("sqlite3 .sluice/rickandmorty.db"), "{}", run.stdout);
    let wh = Wh::Sqlite(db, tempfile::tempdir().unwrap());
    for (table, n) in [("character", 826), ("location", 126), ("episode", 51)] {
        assert_eq!(wh.count(&wh.t("", table)), n, "{table}");
    }
    assert!(wh.count(&wh.t("", "appearance")) > 1000);
    assert!(Path::new(&dir.path().join(".sluice/staging/rickandmorty")).is_dir());
}

/// SQLite's storage of every column type: integers and reals as numbers, exact decimals
/// and JSON as text, booleans as 0/1, dates and timestamps as ISO 8601 UTC text.
#[test]
fn sqlite_stores_every_type_readably() {
    let env = Env::new(Wh::sqlite());
    env.run("tests/fixtures/specs/types.yaml").success();
    let row = |id: i32| {
        env.wh
            .query(&format!(
                "SELECT label_trim, n_str, typeof(n_str), big, dec, typeof(dec), dbl, typeof(dbl), flag, day, ts, ts_naive, ms, s, url_id, empty, obj, \
                 json_extract(obj, '$.a[2].b') IS NULL, tags, loaded_by, run = _sluice_run_id, run_at IS NOT NULL FROM item WHERE id = {id}"
            ))
            .remove(0)
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        row(1),
        [
            s("Mixed Case"),
            s("42"),
            s("integer"),
            s("9007199254740993"),
            s("123456789012345678901234567890.123456789"),
            s("text"),
            s("2.5"),
            s("real"),
            s("1"),
            s("2021-09-05"),
            s("2017-11-04T18:48:46.250000Z"),
            s("2017-11-04T18:48:46.000000Z"),
            s("2022-05-14T00:41:51.546000Z"),
            s("2022-05-14T00:41:51.000000Z"),
            s("17"),
            None,
            s(r#"{"a":[1,2,{"b":null}]}"#),
            s("1"),
            s(r#"["x","y"]"#),
            s("types"),
            s("1"),
            s("1"),
        ]
    );
    let r3 = row(3);
    assert_eq!(r3[1..6], [s("7"), s("integer"), s("-5"), s("-0.5"), s("text")]);
    assert_eq!(r3[6].as_deref().map(|v| v.parse::<f64>().unwrap()), Some(1e300));
    assert_eq!(r3[7..10], [s("real"), s("0"), s("2013-12-02")]);
    assert_eq!(r3[12], s("1970-01-01T00:00:00.000000Z"));
}
