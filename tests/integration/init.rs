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
    let api = ApiServer::start();
    let (dir, log) = init_and_run(&api, golden_name, &[path], &["--name", "shapes"]);
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
