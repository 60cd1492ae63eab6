//! Parent → child requests (`for_each`): one request per parent record, templated paths,
//! URLs, parameters and bodies, `parent_path` columns, `on_missing`, and parents that are
//! only staged.

use std::collections::HashSet;

use serde_json::Value;

use crate::extract::staged_records;
use crate::support::api::{episode_character_ids, ApiServer, Fault};
use crate::support::{pg, Sluice};

/// The 51 episodes of the fixture, and the comments the JSONPlaceholder route gives
/// (one per character of each episode).
fn episodes() -> Vec<Value> {
    crate::support::recorded("episode")
}

fn comment_count() -> usize {
    episodes().iter().map(|e| episode_character_ids(e).len()).sum()
}

fn ids(records: &[String], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap()[field].to_string())
        .collect()
}

const EXAMPLE: &str = "examples/specs/jsonplaceholder_comments.yaml";

#[test]
fn posts_to_comments_loads_every_comment_with_the_post_it_was_requested_for() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let run = Sluice::new(["run", EXAMPLE])
        .env("JSONPLACEHOLDER_API", format!("{}/jsonplaceholder", api.base))
        .env("SLUICE_STAGING", dir.path())
        .env("DATABASE_URL", &db)
        .run()
        .success();
    let comments = comment_count();
    assert!(comments > 500, "{comments}");
    // One request for the posts, one per post for its comments.
    assert_eq!(api.requests().len(), 1 + 51, "{}", run.stderr);
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(DISTINCT id) FROM jsonplaceholder.comment"
        )
        .as_deref(),
        Some(format!("{comments}/{comments}").as_str())
    );
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) FROM jsonplaceholder.post").as_deref(),
        Some("51")
    );
    // `parent_path: $.id` holds the post each comment was requested for: the API's own
    // `postId`, which the staged record kept, agrees for every row.
    let staged = staged_records(dir.path(), "jsonplaceholder")
        .remove("comments")
        .unwrap();
    let mismatched = staged
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap())
        .filter(|r| r["_sluice_parent"]["$.id"] != r["postId"])
        .count();
    assert_eq!((staged.len(), mismatched), (comments, 0));
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) FROM jsonplaceholder.comment WHERE post_id <> id / 1000 OR post_id IS NULL"
        )
        .as_deref(),
        Some("0")
    );
    // Each path was filled from its own post: every post's comments were asked for once.
    let asked: HashSet<String> = api
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .filter(|t| t.ends_with("/comments"))
        .collect();
    assert_eq!(asked.len(), 51);
    assert!(asked.contains("/jsonplaceholder/posts/51/comments"), "{asked:?}");
}

#[test]
fn a_missing_child_fails_the_resource_or_is_skipped_and_counted() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let extract = |spec: &str| {
        Sluice::new(["extract", spec])
            .env("JSONPLACEHOLDER_API", format!("{}/jsonplaceholder", api.base))
            .env("SLUICE_STAGING", dir.path())
            .run()
    };
    api.fault("/jsonplaceholder/posts/7/comments", Fault::Status(404), 1);
    let failed = extract(EXAMPLE).failure(1);
    assert!(
        failed.stderr.contains("resource `comments`, page 1: GET http://")
            && failed
                .stderr
                .contains("/jsonplaceholder/posts/7/comments failed with HTTP 404: {\"error\":\"injected 404\"} (the request for record 7 of `posts`)"),
        "{}",
        failed.stderr
    );
    // With `on_missing: skip` the 404 is counted and logged, and the rest is staged.
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("    for_each: posts\n", "    for_each: posts\n    on_missing: skip\n");
    let skipping = dir.path().join("skip.yaml");
    std::fs::write(&skipping, text).unwrap();
    api.fault("/jsonplaceholder/posts/7/comments", Fault::Status(404), 1);
    let ok = extract(skipping.to_str().unwrap()).success();
    assert!(
        ok.stdout
            .contains("resource comments: 1 parent records skipped: a response rule ignored their request"),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stderr.contains("HTTP 404 for this parent record; skipped"),
        "{}",
        ok.stderr
    );
    // The failed run removed what it staged, so these are the second run's alone.
    let staged = staged_records(dir.path(), "jsonplaceholder")
        .remove("comments")
        .unwrap();
    let seven = episode_character_ids(&episodes()[6]).len();
    assert_eq!(staged.len(), comment_count() - seven);
    assert!(!ids(&staged, "postId").contains(&"7".to_string()));
}

/// The example spec with `edit` applied, written to `dir`.
fn variant(dir: &std::path::Path, edit: impl Fn(String) -> String) -> String {
    let path = dir.join("variant.yaml");
    std::fs::write(&path, edit(std::fs::read_to_string(EXAMPLE).unwrap())).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn parameters_take_placeholders_and_a_child_alone_brings_its_parent() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    // `/comments?postId=N` instead of the templated path.
    let spec = variant(dir.path(), |t| {
        t.replace(
            "    path: /posts/{parent.id}/comments\n",
            "    path: /comments\n    params: {postId: \"{parent.id}\"}\n",
        )
    });
    let run = Sluice::new(["extract", &spec, "--resource", "comments"])
        .env("JSONPLACEHOLDER_API", format!("{}/jsonplaceholder", api.base))
        .env("SLUICE_STAGING", dir.path())
        .run()
        .success();
    let mut staged = staged_records(dir.path(), "jsonplaceholder");
    let comments = staged.remove("comments").unwrap();
    assert_eq!(comments.len(), comment_count(), "{}", run.stderr);
    // The parent was extracted too, since the children are requested for its records.
    assert_eq!(staged.remove("posts").map(|p| p.len()), Some(51));
    assert!(run.stderr.contains("the parent is extracted too"), "{}", run.stderr);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.target == "/jsonplaceholder/comments?postId=51"));
}

#[test]
fn a_limit_stops_the_child_requests_early() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    Sluice::new(["extract", EXAMPLE, "--limit", "10"])
        .env("JSONPLACEHOLDER_API", format!("{}/jsonplaceholder", api.base))
        .env("SLUICE_STAGING", dir.path())
        .run()
        .success();
    let mut staged = staged_records(dir.path(), "jsonplaceholder");
    assert_eq!(staged.remove("posts").unwrap().len(), 10);
    assert_eq!(staged.remove("comments").unwrap().len(), 10);
    // 10 posts are all the parents there are; no request is made for more.
    let children = api
        .requests()
        .iter()
        .filter(|r| r.target.ends_with("/comments"))
        .count();
    assert!((1..=10).contains(&children), "{children}");
}

#[test]
fn a_parent_url_on_another_host_gets_no_credentials() {
    let api = ApiServer::start();
    let other = ApiServer::start_on("127.0.0.2");
    let dir = tempfile::tempdir().unwrap();
    // The parent records link to the other host.
    let list = serde_json::json!({"results": [
        {"name": "a", "url": format!("{}/page?n=1", api.base)},
        {"name": "b", "url": format!("{}/page?n=2", other.base)},
    ]});
    api.put("list", list.to_string(), &[]);
    let spec = dir.path().join("hosts.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: hosts\nsource:\n  base_url: \"${API_BASE}\"\n  auth: {type: bearer, token: \"${TOKEN}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: hosts}\nresources:\n  - name: list\n    path: /dyn/list\n    records: $.results[*]\n  - name: detail\n    for_each: list\n    url: \"{parent.url}\"\n    records: $\n    table:\n      name: detail\n      columns:\n        - {name: doc, type: jsonb, path: $}\n",
    )
    .unwrap();
    let run = Sluice::new(["extract", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("TOKEN", "secret-token")
        .env("SLUICE_STAGING", dir.path())
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("is on host `127.0.0.2:") && run.stderr.contains("(the request for record 2 of `list`)"),
        "{}",
        run.stderr
    );
    assert!(other.requests().is_empty(), "the other host was called");
    assert!(!run.stderr.contains("secret-token"));
}

#[test]
fn a_dry_run_requests_children_for_the_parents_it_fetched() {
    let api = ApiServer::start();
    let run = Sluice::new([
        "run",
        "examples/specs/pokeapi_pokemon.yaml",
        "--dry-run",
        "--limit",
        "3",
    ])
    .env("POKEAPI", format!("{}/pokeapi/api/v2", api.base))
    .run()
    .success();
    let rows: Vec<Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["_table"] == "pokemon")
        .collect();
    assert_eq!(rows.len(), 3, "{}\n{}", run.stdout, run.stderr);
    for row in &rows {
        assert_eq!(
            row["list_url"].as_str().unwrap(),
            format!("{}/pokeapi/api/v2/pokemon/{}/", api.base, row["id"]),
            "{row}"
        );
    }
    assert!(
        run.stderr
            .contains("resource `pokemon_list` has no table: 3 records fetched"),
        "{}",
        run.stderr
    );
}

#[test]
fn child_requests_run_source_concurrency_at_once_and_bodies_keep_value_types() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Every child request is slow: they overlap up to `source.concurrency`, never more.
    for n in 1..=12 {
        api.fault(
            &format!("/jsonplaceholder/posts/{n}/comments"),
            Fault::Stall(std::time::Duration::from_millis(300)),
            1,
        );
    }
    let spec = variant(dir.path(), |t| t.replace("  concurrency: 4\n", "  concurrency: 3\n"));
    Sluice::new(["extract", &spec, "--resource", "comments"])
        .env("JSONPLACEHOLDER_API", format!("{}/jsonplaceholder", api.base))
        .env("SLUICE_STAGING", dir.path())
        .run()
        .success();
    assert_eq!(api.max_in_flight(), 3);
    // A POST body per parent: `first: "{parent.id}"` is sent as the number it is (the
    // GraphQL route takes `first` as a number and falls back to 10 otherwise).
    let spec = dir.path().join("graphql.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: gql\nsource:\n  base_url: \"${API_BASE}\"\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: gql}\nresources:\n  - name: posts\n    path: /jsonplaceholder/posts\n    records: \"$[0:5]\"\n  - name: firsts\n    for_each: posts\n    path: /graphql\n    method: POST\n    body: {query: \"query($first: Int) { characters(first: $first) { nodes { id } } }\", variables: {first: \"{parent.id}\", note: \"post {parent.id}\"}}\n    records: $.data.characters.nodes[*]\n    paginate: {type: none, total_check: off}\n    table:\n      name: first\n      columns:\n        - {name: id, type: text, path: $.id}\n        - {name: post, type: integer, parent_path: $.id}\n",
    )
    .unwrap();
    let staging = dir.path().join("gql");
    let run = Sluice::new(["extract", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", &staging)
        .run()
        .success();
    let staged = staged_records(&staging, "gql").remove("firsts").unwrap();
    assert_eq!(staged.len(), 1 + 2 + 3 + 4 + 5, "{}", run.stderr);
}

#[test]
fn a_parent_without_a_table_is_staged_but_not_loaded() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let step = |args: &[&str]| {
        Sluice::new(args.iter().copied())
            .env("POKEAPI", format!("{}/pokeapi/api/v2", api.base))
            .env("SLUICE_STAGING", dir.path())
            .env("DATABASE_URL", &db)
            .run()
            .success()
    };
    let extracted = step(&["extract", "examples/specs/pokeapi_pokemon.yaml"]);
    assert!(
        extracted.stdout.contains("pokemon_list                   3         51"),
        "{}",
        extracted.stdout
    );
    step(&["load", "examples/specs/pokeapi_pokemon.yaml", "--latest"]);
    assert_eq!(
        pg::query(
            &db,
            "SELECT (SELECT count(*) FROM pokeapi.pokemon)::text, (SELECT count(*) FROM pokeapi.pokemon_type)::text, \
             (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'pokeapi')::text"
        ),
        vec![vec![Some("51".into()), Some("51".into()), Some("2".into())]]
    );
}

#[test]
fn a_misspelt_parent_path_fails_instead_of_loading_nulls() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = variant(dir.path(), |t| t.replace("parent_path: $.id,", "parent_path: $.idd,"));
    let run = Sluice::new(["run", &spec, "--dry-run", "--limit", "5"])
        .env("JSONPLACEHOLDER_API", format!("{}/jsonplaceholder", api.base))
        .run()
        .failure(1);
    assert!(
        run.stderr
            .contains("column `post_id` of table `comment`: `parent_path: $.idd` matched nothing in 5 rows"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("parent $.idd"),
        "the coverage table shows it: {}",
        run.stderr
    );
}
