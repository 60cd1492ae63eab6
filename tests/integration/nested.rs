//! Nested tables that stay true to the source: merge replaces a parent's children,
//! `meta: index`, `zip` of parallel arrays, and tables nested in nested tables.

use serde_json::{json, Value};

use crate::support::api::ApiServer;
use crate::support::{pg, Sluice};

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn merge_removes_the_elements_a_parent_no_longer_has() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "items.yaml",
        "version: 1\nname: items\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: items}\nresources:\n  - name: items\n    path: /dyn/items\n    records: $[*]\n    table:\n      name: item\n      write: merge\n      primary_key: [id]\n      columns:\n        - {name: id, type: integer, path: $.id}\n      nested:\n        - name: tag\n          each: $.tags[*]\n          primary_key: [item_id, tag]\n          columns:\n            - {name: item_id, from_parent: id}\n            - {name: tag, type: text, path: $}\n            - {name: position, meta: index}\n",
    );
    let run = |body: Value| {
        api.put("items", body.to_string(), &[]);
        Sluice::new(["run", &spec])
            .env("API_BASE", &api.base)
            .env("SLUICE_STAGING", dir.path())
            .env("DATABASE_URL", &db)
            .run()
            .success()
    };
    let tags = || {
        pg::query(
            &db,
            "SELECT item_id::text AS item, tag, position::text AS pos FROM items.tag ORDER BY item_id, position",
        )
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect::<Vec<_>>().join(":"))
        .collect::<Vec<_>>()
    };
    run(json!([{"id": 1, "tags": ["a", "b", "c"]}, {"id": 2, "tags": ["x"]}]));
    assert_eq!(tags(), ["1:a:0", "1:b:1", "1:c:2", "2:x:0"]);
    // Item 1 lost `b`; item 2 is not in this run, so its rows stay.
    run(json!([{"id": 1, "tags": ["a", "c"]}]));
    assert_eq!(tags(), ["1:a:0", "1:c:1", "2:x:0"]);
    // The ledger counts what was removed.
    let resources = pg::scalar(
        &db,
        "SELECT resources::text FROM _sluice.runs WHERE status = 'loaded' ORDER BY load_id DESC LIMIT 1",
    )
    .unwrap();
    let stats: Value = serde_json::from_str(&resources).unwrap();
    assert_eq!(stats[1]["table"], "tag");
    assert_eq!(stats[1]["deleted"], 1, "{stats}");
    // A parent whose array is now empty loses all its rows.
    run(json!([{"id": 2, "tags": []}]));
    assert_eq!(tags(), ["1:a:0", "1:c:1"]);
}

/// The characters of the fixture, as (id, episode URLs).
fn characters() -> Vec<(u64, Vec<String>, String)> {
    crate::support::recorded("character")
        .iter()
        .map(|c| {
            let episodes = c["episode"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect();
            (
                c["id"].as_u64().unwrap(),
                episodes,
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const PAGES: &str = "version: 1\nname: pages\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: pages}\nresources:\n  - name: pages\n    path: /api/character\n    records: $\n    paginate: {type: next_url, next: $.info.next}\n    table:\n      name: page\n      columns:\n        - {name: next, type: text, path: $.info.next}\n      nested:\n        - name: character\n          each: $.results[*]\n          columns:\n            - {name: id, type: integer, path: $.id}\n            - {name: name, type: text, path: $.name}\n          nested:\n            - name: appearance\n              each: $.episode[*]\n              columns:\n                - {name: character_id, from_parent: id}\n                - {name: position, meta: index}\n                - {name: episode, type: text, path: $}\n        - name: roster\n          each: {zip: {id: \"$.results[*].id\", name: ZIP_NAME}}\n          columns:\n            - {name: id, type: integer, path: $.id}\n            - {name: name, type: text, path: $.name}\n            - {name: position, meta: index}\n";

#[test]
fn tables_nest_at_any_depth_and_zip_turns_parallel_arrays_into_rows() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "pages.yaml",
        &PAGES.replace("ZIP_NAME", "\"$.results[*].name\""),
    );
    let sluice = |spec: &str, extra: &[&str]| {
        let mut args = vec!["run", spec];
        args.extend_from_slice(extra);
        Sluice::new(args)
            .env("API_BASE", &api.base)
            .env("SLUICE_STAGING", dir.path())
            .env("DATABASE_URL", &db)
            .run()
    };
    sluice(&spec, &[]).success();
    let all = characters();
    let scalar = |sql: &str| pg::scalar(&db, sql).unwrap();
    assert_eq!(scalar("SELECT count(*) FROM pages.page"), "42");
    assert_eq!(
        scalar("SELECT count(*) || '/' || count(DISTINCT id) FROM pages.character"),
        "826/826"
    );
    // Three levels: page → character → appearance, in the order of each array.
    let appearances: usize = all.iter().map(|(_, e, _)| e.len()).sum();
    assert_eq!(scalar("SELECT count(*) FROM pages.appearance"), appearances.to_string());
    let (id, episodes, _) = &all[0];
    let rows = pg::query(
        &db,
        &format!(
            "SELECT position::text AS pos, episode FROM pages.appearance WHERE character_id = {id} ORDER BY position"
        ),
    );
    let expected: Vec<Vec<Option<String>>> = episodes
        .iter()
        .enumerate()
        .map(|(i, e)| vec![Some(i.to_string()), Some(e.clone())])
        .collect();
    assert_eq!(rows, expected);
    // The zipped arrays: one row per position, fields side by side.
    assert_eq!(scalar("SELECT count(*) FROM pages.roster"), "826");
    assert_eq!(
        scalar("SELECT count(*) FROM pages.roster r JOIN pages.character c USING (id) WHERE r.name = c.name"),
        "826"
    );
    assert_eq!(scalar("SELECT max(position) FROM pages.roster"), "19");
    // Arrays of unequal length are a record error.
    let uneven = write(
        dir.path(),
        "uneven.yaml",
        &PAGES.replace("ZIP_NAME", "\"$.results[0:5].name\""),
    );
    let run = sluice(&uneven, &["--dry-run", "--limit", "1"]).failure(1);
    assert!(
        run.stderr
            .contains("the zipped arrays differ in length: `id` has 20 items but `name` has 5"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("table `roster`"), "{}", run.stderr);
}

/// Items with 1 to 9 tags each, as the `/dyn/items` body, and the spec that loads them
/// (`tag` keyed on item and tag).
fn many_items(api: &ApiServer, dir: &std::path::Path, n: u64, repeat_at: Option<u64>) -> String {
    let items: Vec<Value> = (1..=n)
        .map(|id| {
            let mut tags: Vec<String> = (0..1 + id % 9).map(|j| format!("tag-{j}-of-item-{id}")).collect();
            if Some(id) == repeat_at {
                tags.push(tags[0].clone());
            }
            json!({"id": id, "name": format!("item {id}"), "tags": tags})
        })
        .collect();
    api.put("items", Value::Array(items).to_string(), &[]);
    write(
        dir,
        "items.yaml",
        "version: 1\nname: items\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: items}\nresources:\n  - name: items\n    path: /dyn/items\n    records: $[*]\n    table:\n      name: item\n      primary_key: [id]\n      columns:\n        - {name: id, type: integer, path: $.id}\n        - {name: name, type: text, path: $.name}\n      nested:\n        - name: tag\n          each: $.tags[*]\n          primary_key: [item_id, tag]\n          columns:\n            - {name: item_id, from_parent: id}\n            - {name: tag, type: text, path: $}\n            - {name: position, meta: index}\n",
    )
}

#[test]
fn nested_rows_streamed_beside_their_parents_in_many_copies_load_exactly() {
    // About 100,000 tag rows (some 30 chunks of COPY data) beside 20,000 items (some 4): the
    // connection switches between the two tables' COPYs many times.
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000u64;
    let spec = many_items(&api, dir.path(), n, None);
    Sluice::new(["run", &spec])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", dir.path())
        .env("DATABASE_URL", &db)
        .run()
        .success();
    let tags: u64 = (1..=n).map(|id| 1 + id % 9).sum();
    let positions: u64 = (1..=n).map(|id| (0..1 + id % 9).sum::<u64>()).sum();
    let item_sum: u64 = (1..=n).map(|id| id * (1 + id % 9)).sum();
    assert_eq!(
        pg::query(
            &db,
            "SELECT (SELECT count(*) FROM items.item)::text, count(*)::text, sum(position)::text, sum(item_id)::text, \
             count(*) FILTER (WHERE tag = 'tag-' || position || '-of-item-' || item_id)::text FROM items.tag"
        )[0],
        [n, tags, positions, item_sum, tags]
            .map(|v| Some(v.to_string()))
            .to_vec()
    );
    let orphans = pg::scalar(
        &db,
        "SELECT count(*) FROM items.tag t WHERE NOT EXISTS (SELECT 1 FROM items.item i WHERE i.id = t.item_id)",
    );
    assert_eq!(orphans.as_deref(), Some("0"));
}

#[test]
fn a_nested_copy_that_fails_after_others_ended_leaves_the_database_as_it_was() {
    // The repeated tag of item 19,000 breaks `tag`'s key in one of its last COPYs, after
    // COPYs of both tables have ended: the load fails and nothing of it stays.
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let spec = many_items(&api, dir.path(), 20_000, Some(19_000));
    let failed = Sluice::new(["run", &spec])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", dir.path())
        .env("DATABASE_URL", &db)
        .run()
        .failure(1);
    let stderr = &failed.stderr;
    assert!(stderr.contains("tag") && stderr.contains("duplicate key"), "{stderr}");
    // The tables the load made went with it.
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'items'"
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        pg::scalar(&db, "SELECT status FROM _sluice.runs ORDER BY load_id DESC LIMIT 1").as_deref(),
        Some("failed")
    );
}
