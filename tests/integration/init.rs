//! `sluice init`: for every API shape the test server serves, the spec it writes (kept
//! as a golden file) validates, and its `run` loads exactly the records the server holds.

use std::path::Path;

use crate::support::api::{ApiServer, Fault};
use crate::support::{assert_snapshot, fixture, recorded, Sluice};

/// The golden form of a spec: the test server's address is not the same twice.
fn golden(api: &ApiServer, text: &str) -> String {
    text.replace(&api.base, "http://127.0.0.1:PORT")
}

/// Row counts of the tables of an SQLite warehouse.
fn count(db: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("count {table} in {}: {e}", db.display()))
}

/// `init` the URLs (paths on the test server) into a spec, compare it with its golden
/// file, validate it, run it into SQLite and return the warehouse.
fn init_and_run(api: &ApiServer, golden_name: &str, paths: &[&str], args: &[&str]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let mut argv: Vec<String> = vec!["init".into()];
    argv.extend(paths.iter().map(|p| format!("{}{p}", api.base)));
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.extend(["-o".into(), spec.to_str().unwrap().into()]);
    let init = Sluice::new(&argv).dir(dir.path()).run().success();
    let text = std::fs::read_to_string(&spec).unwrap();
    assert_snapshot(&fixture(&format!("init/{golden_name}.yaml")), &golden(api, &text));
    Sluice::new(["validate", spec.to_str().unwrap()]).run().success();
    let run = Sluice::new(["run", spec.to_str().unwrap()])
        .dir(dir.path())
        .run()
        .success();
    (dir, format!("{}\n{}\n{}", init.stderr, run.stdout, run.stderr))
}

fn db(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    dir.path().join(format!(".sluice/{name}.db"))
}

/// Every record of the recorded CoinCap exchanges.
fn exchanges() -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("api/coincap/exchanges-v2.json")).unwrap()).unwrap();
    v["data"].as_array().unwrap().len()
}

/// One resource of one shape: init, golden, run, and the table holds `rows` rows.
fn shape(golden_name: &str, path: &str, table: &str, rows: usize) -> (tempfile::TempDir, String) {
    shape_with(golden_name, path, table, rows, &[])
}

fn shape_with(golden_name: &str, path: &str, table: &str, rows: usize, args: &[&str]) -> (tempfile::TempDir, String) {
    let api = ApiServer::start();
    let args: Vec<&str> = ["--name", "shapes"].iter().chain(args).copied().collect();
    let (dir, log) = init_and_run(&api, golden_name, &[path], &args);
    assert_eq!(count(&db(&dir, "shapes"), table), rows as i64, "{log}");
    (dir, log)
}

#[test]
fn coincap_pages_by_offset_and_limit_found_by_trying() {
    let (_, log) = shape("coincap_exchanges", "/v3/exchanges", "exchanges", exchanges());
    assert!(log.contains("offset"), "{log}");
}

#[test]
fn stripe_pages_from_the_last_id_until_has_more_is_false() {
    shape("stripe_charges", "/v1/charges", "charges", 826);
}

#[test]
fn zendesk_follows_after_url_until_end_of_stream() {
    shape(
        "zendesk_tickets",
        "/api/v2/incremental/tickets/cursor.json",
        "tickets",
        826,
    );
}

#[test]
fn github_follows_the_link_header_over_a_bare_array() {
    shape("github_issues", "/repos/rust-lang/rust/issues", "issues", 826);
}

#[test]
fn pokeapi_follows_next_and_keeps_the_detail_url() {
    shape("pokeapi_pokemon", "/pokeapi/api/v2/pokemon", "pokemon", 51);
}

#[test]
fn jsonplaceholder_is_one_page_when_no_parameter_moves() {
    shape("jsonplaceholder_posts", "/jsonplaceholder/posts", "posts", 51);
}

#[test]
fn every_type_from_values_of_mixed_kinds() {
    let (dir, log) = shape("static_types", "/static/types", "types", 3);
    assert_eq!(count(&db(&dir, "shapes"), "types_tags"), 3, "{log}");
    let c = rusqlite::Connection::open(db(&dir, "shapes")).unwrap();
    // Numbers sent as text and as numbers, in one column, read as the same numbers.
    let (n, big): (i64, i64) = c
        .query_row("SELECT n_str, big FROM types WHERE id = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, big), (7, -5));
}

#[test]
fn hubspot_search_sends_the_cursor_in_the_body() {
    let body = r#"{"limit": 100, "properties": ["email", "firstname"], "filterGroups": []}"#;
    let (_, log) = shape_with(
        "hubspot_contacts",
        "/crm/v3/objects/contacts/search",
        "contacts",
        826,
        &["--body", body],
    );
    assert!(log.contains("body_field: after"), "{log}");
}

#[test]
fn graphql_page_numbers_go_back_as_a_variable() {
    let body = r#"{"query": "query($page: Int) { characters(page: $page) { info { next } results { id name } } }", "variables": {"page": 1}}"#;
    let (dir, _) = shape_with("graphql_pages", "/graphql", "characters", 826, &["--body", body]);
    let spec = std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap();
    assert!(
        spec.contains("body_field: variables.page") && spec.contains("query($$page: Int)"),
        "{spec}"
    );
}

#[test]
fn graphql_relay_cursor_until_has_next_page_is_false() {
    let body = r#"{"query": "query($first: Int, $after: String) { characters(first: $first, after: $after) { nodes { id name } pageInfo { hasNextPage endCursor } } }", "variables": {"first": 50}}"#;
    let (dir, _) = shape_with("graphql_relay", "/graphql", "characters", 826, &["--body", body]);
    let spec = std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap();
    assert!(
        spec.contains(
            "body_field: variables.after, stop_when: {path: $.data.characters.pageInfo.hasNextPage, equals: false}"
        ),
        "{spec}"
    );
}

#[test]
fn offset_with_a_total() {
    shape("offset_character", "/offset/character", "character", 826);
}

#[test]
fn cursor_in_the_body() {
    shape("cursor_location", "/cursor/location", "location", 126);
}

#[test]
fn link_header_over_an_object() {
    shape("link_episode", "/link/episode", "episode", 51);
}

#[test]
fn page_numbers_until_an_empty_page() {
    shape("page_character", "/empty/character", "character", 826);
}

#[test]
fn rick_and_morty_character_by_its_next_url() {
    let api = ApiServer::start();
    let (dir, _) = init_and_run(
        &api,
        "rickandmorty_character",
        &["/api/character"],
        &["--name", "rickandmorty"],
    );
    let characters = recorded("character");
    assert_eq!(count(&db(&dir, "rickandmorty"), "character"), characters.len() as i64);
}

/// A new spec follows the reference pipelines' conventions: the base URL is the API's
/// root (origin and the folders its URLs share, as `pipelines/rickandmorty.yaml` has it),
/// so that `RICKANDMORTY_BASE_URL` means the same for both; a bearer token is read from
/// `<NAME>_TOKEN`; and a spec written beside a `schemas/` folder names its JSON Schema
/// for editors, as the reference pipelines do.
#[test]
fn a_new_spec_follows_the_reference_pipelines_conventions() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("schemas/pipeline.schema.json"), "{}").unwrap();
    let out = dir.path().join("pipelines/rickandmorty.yaml");
    Sluice::new([
        "init",
        &format!("{}/api/location", api.base),
        &format!("{}/api/episode", api.base),
        "--name",
        "rickandmorty",
        "--auth",
        "bearer",
        "-o",
        out.to_str().unwrap(),
    ])
    .env("RICKANDMORTY_TOKEN", "tok")
    .dir(dir.path())
    .run()
    .success();
    let text = std::fs::read_to_string(&out).unwrap();
    let reference = std::fs::read_to_string(crate::support::root().join("pipelines/rickandmorty.yaml")).unwrap();
    let first = |t: &str| t.lines().next().unwrap_or("").to_string();
    assert_eq!(first(&text), first(&reference), "{text}");
    assert!(
        text.contains(&format!("base_url: ${{RICKANDMORTY_BASE_URL:-{}/api}}", api.base)),
        "{text}"
    );
    assert!(reference.contains("base_url: ${RICKANDMORTY_BASE_URL:-https://rickandmortyapi.com/api}"));
    for path in ["path: /location\n", "path: /episode\n"] {
        assert!(text.contains(path) && reference.contains(path), "{path}: {text}");
    }
    assert!(text.contains("token: \"${RICKANDMORTY_TOKEN}\""), "{text}");
    // Without a schemas/ folder above it, no line that would name a missing file.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("spec.yaml");
    Sluice::new([
        "init",
        &format!("{}/api/location", api.base),
        "-o",
        out.to_str().unwrap(),
    ])
    .dir(elsewhere.path())
    .run()
    .success();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("yaml-language-server"), "{text}");
}

/// Rows of a nested table: the elements of `field` in every recorded record.
fn elements(endpoint: &str, field: &str) -> i64 {
    recorded(endpoint)
        .iter()
        .map(|r| r[field].as_array().unwrap().len() as i64)
        .sum()
}

#[test]
fn three_urls_of_one_api_reference_each_other() {
    let api = ApiServer::start();
    let (dir, log) = init_and_run(
        &api,
        "rickandmorty",
        &["/api/location", "/api/episode", "/api/character"],
        &["--name", "rickandmorty", "--pages", "2"],
    );
    let db = db(&dir, "rickandmorty");
    for (table, rows) in [
        ("location", recorded("location").len() as i64),
        ("episode", recorded("episode").len() as i64),
        ("character", recorded("character").len() as i64),
        ("location_residents", elements("location", "residents")),
        ("episode_characters", elements("episode", "characters")),
        ("character_episode", elements("character", "episode")),
    ] {
        assert_eq!(count(&db, table), rows, "{table}\n{log}");
    }
    // The same spec into PostgreSQL, foreign keys and all.
    let pg = crate::support::pg::fresh_database();
    Sluice::new(["run", dir.path().join("spec.yaml").to_str().unwrap()])
        .dir(dir.path())
        .env("DATABASE_URL", &pg)
        .run()
        .success();
    for (table, rows) in [
        ("character", 826),
        ("character_episode", elements("character", "episode")),
    ] {
        let sql = format!("SELECT count(*) FROM rickandmorty.{table}");
        assert_eq!(crate::support::pg::scalar(&pg, &sql), Some(rows.to_string()), "{table}");
    }
    let fks = crate::support::pg::scalar(
        &pg,
        "SELECT count(*) FROM information_schema.table_constraints WHERE table_schema = 'rickandmorty' AND constraint_type = 'FOREIGN KEY'",
    );
    assert_eq!(fks.as_deref(), Some("8"), "two per nested table, two from character");
    let spec = std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap();
    for reference in [
        "path: $.origin.url, transform: url_last_segment, references: location.id",
        "path: $, transform: url_last_segment, references: episode.id",
        "path: $, transform: url_last_segment, references: character.id",
    ] {
        assert!(spec.contains(reference), "no `{reference}` in\n{spec}");
    }
    // The references hold in the data: every origin is a location that was loaded.
    let c = rusqlite::Connection::open(&db).unwrap();
    let dangling: i64 = c
        .query_row(
            "SELECT count(*) FROM character WHERE origin_id IS NOT NULL AND origin_id NOT IN (SELECT id FROM location)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dangling, 0);
}

#[test]
fn append_adds_a_resource_that_references_the_spec_s_own() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    Sluice::new([
        "init",
        &format!("{}/api/location", api.base),
        "--name",
        "rickandmorty",
        "-o",
        spec.to_str().unwrap(),
    ])
    .run()
    .success();
    let before = std::fs::read_to_string(&spec).unwrap();
    // -o refuses to overwrite what exists.
    let again = Sluice::new([
        "init",
        &format!("{}/api/location", api.base),
        "-o",
        spec.to_str().unwrap(),
    ])
    .run()
    .failure(1);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let appended = Sluice::new([
        "init",
        &format!("{}/api/character", api.base),
        "--append",
        spec.to_str().unwrap(),
    ])
    .run()
    .success();
    let after = std::fs::read_to_string(&spec).unwrap();
    assert!(after.starts_with(&before), "append keeps the spec as it was");
    assert_snapshot(&fixture("init/rickandmorty_appended.yaml"), &golden(&api, &after));
    assert!(
        after.contains("references: location.id"),
        "{after}\n{}",
        appended.stderr
    );
    Sluice::new(["run", spec.to_str().unwrap()])
        .dir(dir.path())
        .run()
        .success();
    let db = db(&dir, "rickandmorty");
    assert_eq!(count(&db, "location"), 126);
    assert_eq!(count(&db, "character"), 826);
    // A second append of the same path gets a name of its own.
    Sluice::new([
        "init",
        &format!("{}/api/character", api.base),
        "--append",
        spec.to_str().unwrap(),
        "--resource",
        "character",
    ])
    .run()
    .failure(2);
}

#[test]
fn append_to_a_reference_pipeline_under_its_base_url() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("rickandmorty.yaml");
    std::fs::copy(crate::support::root().join("pipelines/rickandmorty.yaml"), &spec).unwrap();
    let out = Sluice::new([
        "init",
        &format!("{}/api/location", api.base),
        "--append",
        spec.to_str().unwrap(),
    ])
    .api(&api)
    .run()
    .success();
    let text = std::fs::read_to_string(&spec).unwrap();
    // A path below the base URL, a name of its own, references to the spec's own keys.
    for expected in [
        "- name: location_2\n    path: /location\n",
        "references: character.character_id",
        "name: location_2_residents",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}\n{}", out.stderr);
    }
    Sluice::new(["run", spec.to_str().unwrap()])
        .api(&api)
        .dir(dir.path())
        .run()
        .success();
    let db = db(&dir, "rickandmorty");
    assert_eq!(count(&db, "location_2"), 126);
    assert_eq!(count(&db, "location_2_residents"), elements("location", "residents"));
}

#[test]
fn credentials_come_from_the_variable_the_spec_names() {
    let api = ApiServer::start();
    let url = format!("{}/api/episode", api.base);
    // Without --auth, a 401 says which option is missing.
    api.fault("/api/episode", Fault::Status(401), 1);
    let refused = Sluice::new(["init", &url, "--name", "shapes"]).run().failure(1);
    assert!(
        refused.stderr.contains("HTTP 401") && refused.stderr.contains("--auth bearer"),
        "{}",
        refused.stderr
    );
    // With --auth, the variable must be set.
    let unset = Sluice::new(["init", &url, "--name", "shapes", "--auth", "bearer"])
        .run()
        .failure(1);
    assert!(unset.stderr.contains("SHAPES_TOKEN"), "{}", unset.stderr);
    // The token is sent, and only its placeholder written.
    let before = api.requests().len();
    let ok = Sluice::new(["init", &url, "--name", "shapes", "--auth", "bearer"])
        .env("SHAPES_TOKEN", "tok-sekrit-42")
        .run()
        .success();
    assert!(
        ok.stdout.contains("auth: {type: bearer, token: \"${SHAPES_TOKEN}\"}"),
        "{}",
        ok.stdout
    );
    let sent: Vec<_> = api.requests()[before..]
        .iter()
        .map(|r| r.authorization.clone())
        .collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|a| a.as_deref() == Some("Bearer tok-sekrit-42")),
        "{sent:?}"
    );
    assert!(!ok.stdout.contains("tok-sekrit-42") && !ok.stderr.contains("tok-sekrit-42"));
    // Refused credentials are named by their variable, never shown.
    api.fault("/api/episode", Fault::Status(403), 1);
    let wrong = Sluice::new([
        "init",
        &url,
        "--name",
        "shapes",
        "--auth",
        "api_key",
        "--key-name",
        "X-Key",
    ])
    .env("SHAPES_API_KEY", "key-sekrit-7")
    .run()
    .failure(1);
    assert!(wrong.stderr.contains("`SHAPES_API_KEY`"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("key-sekrit-7"), "{}", wrong.stderr);
}

#[test]
fn a_key_in_the_url_is_written_as_a_placeholder() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let url = format!("{}/api/episode?api_key=url-sekrit-9&lang=en", api.base);
    let out = Sluice::new(["init", &url, "--name", "shapes", "-o", spec.to_str().unwrap()])
        .run()
        .success();
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(
        text.contains("api_key: \"${SHAPES_API_KEY}\"") && text.contains("lang: en"),
        "{text}"
    );
    assert!(
        !text.contains("url-sekrit-9") && !out.stderr.contains("url-sekrit-9"),
        "{text}\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("export SHAPES_API_KEY="), "{}", out.stderr);
    // The sampling sent it (the next pages are the API's own `info.next` links); so does
    // the run, from the variable.
    let firsts: Vec<String> = api
        .targets_under("/api/episode")
        .into_iter()
        .filter(|t| !t.contains("page="))
        .collect();
    assert!(
        !firsts.is_empty() && firsts.iter().all(|t| t.contains("api_key=url-sekrit-9")),
        "{firsts:?}"
    );
    let before = api.requests().len();
    Sluice::new(["run", spec.to_str().unwrap()])
        .dir(dir.path())
        .env("SHAPES_API_KEY", "url-sekrit-9")
        .run()
        .success();
    assert_eq!(count(&db(&dir, "shapes"), "episode"), 51);
    let first = &api.requests()[before].target;
    assert!(
        first.contains("api_key=url-sekrit-9") && first.contains("lang=en"),
        "{first}"
    );
}

#[test]
fn sampling_is_bounded_by_pages_bytes_and_time_and_shows_progress() {
    let api = ApiServer::start();
    let url = format!("{}/api/character", api.base);
    let one = Sluice::new(["init", &url, "--pages", "1"]).run().success();
    assert!(
        one.stdout
            .contains("sampled 20 records on 1 page, then stopped: the page limit (--pages 1) was reached"),
        "{}",
        one.stdout
    );
    assert!(one.stderr.contains("character: page 1: 20 records"), "{}", one.stderr);
    let small = Sluice::new(["init", &url, "--max-bytes", "1KiB"]).run().success();
    assert!(
        small
            .stdout
            .contains("then stopped: the byte limit (--max-bytes) was reached"),
        "{}",
        small.stdout
    );
    // Out of budget before the pagination is found: one page, and the spec says so.
    let probed = Sluice::new(["init", &format!("{}/empty/character", api.base), "--max-bytes", "1KiB"])
        .run()
        .success();
    assert!(
        probed.stdout.contains("paginate: {type: none}")
            && probed
                .stdout
                .contains("none found before sampling stopped (the byte limit"),
        "{}",
        probed.stdout
    );
    api.fault(
        "/api/character?page=2",
        Fault::Stall(std::time::Duration::from_secs(20)),
        1,
    );
    let slow = Sluice::new(["init", &url, "--max-time", "2s"]).run().success();
    assert!(
        slow.stdout
            .contains("then stopped: the time limit (--max-time) ran out"),
        "{}",
        slow.stdout
    );
    // What was sampled still makes a spec that validates.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), &slow.stdout).unwrap();
    Sluice::new(["validate", dir.path().join("s.yaml").to_str().unwrap()])
        .run()
        .success();
}

#[test]
fn a_cursor_it_cannot_confirm_is_said_not_guessed() {
    let api = ApiServer::start();
    // `X-Next-Cursor` goes back as `c`, a name init does not try.
    let out = Sluice::new(["init", &format!("{}/hcursor/character", api.base)])
        .run()
        .success();
    assert!(out.stdout.contains("paginate: {type: none}"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("# paginate: NOT CONFIRMED: the `x-next-cursor` header looks like a cursor, but sending it as")
            && out.stdout.contains("parameter `cursor`"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("set `paginate` by hand"), "{}", out.stderr);
}

#[test]
fn a_page_without_records_or_json_is_explained() {
    let api = ApiServer::start();
    api.put("empty", r#"{"results": [], "info": {"count": 0}}"#, &[]);
    let empty = Sluice::new(["init", &format!("{}/dyn/empty", api.base)])
        .run()
        .failure(1);
    assert!(
        empty
            .stderr
            .contains("`$.results` is the page's array of objects (0 items)")
            && empty.stderr.contains("empty"),
        "{}",
        empty.stderr
    );
    api.fault("/api/episode", Fault::Html, 1);
    let html = Sluice::new(["init", &format!("{}/api/episode", api.base)])
        .run()
        .failure(1);
    assert!(
        html.stderr.contains("not JSON") && html.stderr.contains("502 Bad Gateway"),
        "{}",
        html.stderr
    );
}

#[test]
fn a_gzipped_semicolon_separated_latin_1_csv_file_is_told_and_loads_whole() {
    let (dir, log) = shape("csv_file", "/files/characters.csv.gz", "characters", 826);
    let spec = std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap();
    assert!(
        spec.contains("format: csv\n") && spec.contains("csv: {delimiter: \";\", encoding: latin-1}"),
        "{spec}\n{log}"
    );
    // The id column is typed from the text, and the key.
    assert!(spec.contains("primary_key: [id]"), "{spec}");
}

#[test]
fn json_lines_and_an_rss_feed_are_told_and_load_whole() {
    let (dir, log) = shape(
        "jsonl_file",
        "/shopify-files/bulk-1.jsonl?X-Goog-Signature=x",
        "bulk_1",
        826 + 275,
    );
    let spec = std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap();
    assert!(spec.contains("format: jsonl\n"), "{spec}\n{log}");
    let (dir, log) = shape("rss_feed", "/feeds/episodes.rss", "episodes", 51);
    let spec = std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap();
    assert!(
        spec.contains("format: xml\n") && spec.contains("xml: {records: rss/channel/item}"),
        "{spec}\n{log}"
    );
}
