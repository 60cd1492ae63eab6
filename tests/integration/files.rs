//! Bulk and file APIs: export jobs (Salesforce Bulk API 2.0, Shopify bulk operations) and
//! bodies that are files (CSV, gzipped CSV, JSON Lines, XML) — each through an example
//! spec against a server shaped as its provider documents, with exact counts, and the
//! ways each goes wrong: a failed or endless job, a row that does not read.

use std::path::Path;

use crate::support::api::ApiServer;
use crate::support::files::{SF_POLLS_IN_PROGRESS, SF_TOKEN, SHOPIFY_TOKEN, SHOPIFY_VARIANTS};
use crate::support::{pg, Sluice};

const SALESFORCE: &str = "examples/specs/salesforce_bulk.yaml";
const SHOPIFY: &str = "examples/specs/shopify_bulk.yaml";
const OPEN_DATA: &str = "examples/specs/open_data_csv.yaml";
const FEED: &str = "examples/specs/episode_feed.yaml";

fn salesforce(api: &ApiServer, db: &str, staging: &Path) -> Sluice {
    Sluice::new(["run", SALESFORCE])
        .env("SALESFORCE_URL", format!("{}/sfbulk", api.base))
        .env("SALESFORCE_TOKEN", SF_TOKEN)
        .env("SLUICE_STAGING", staging)
        .env("DATABASE_URL", db)
}

fn sqlite_rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    st.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(_) => "<blob>".into(),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_salesforce_bulk_job_is_polled_to_its_end_and_its_csv_pages_load_every_contact() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = salesforce(&api, &db, staging.path()).run().success();
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(DISTINCT id) || '/' || count(*) FILTER (WHERE name = 'Rick Sanchez') FROM salesforce.contact"
        )
        .as_deref(),
        Some("826/826/4"),
        "{}",
        run.stderr
    );
    // Typed from CSV text: the timestamps are timestamps.
    assert_eq!(
        pg::scalar(&db, "SELECT min(created_at)::date::text FROM salesforce.contact").as_deref(),
        Some("2017-11-04")
    );
    // Polled until JobComplete, then three result pages, each after the locator before it.
    assert_eq!(api.job_polls(), vec![SF_POLLS_IN_PROGRESS + 1]);
    let results = api.targets_under("/sfbulk/services/data/v59.0/jobs/query/750R00000000001/results");
    assert_eq!(
        results,
        vec![
            "/sfbulk/services/data/v59.0/jobs/query/750R00000000001/results?maxRecords=300",
            "/sfbulk/services/data/v59.0/jobs/query/750R00000000001/results?maxRecords=300&locator=MTAw300",
            "/sfbulk/services/data/v59.0/jobs/query/750R00000000001/results?maxRecords=300&locator=MTAw600",
        ]
    );
    // The job's query starts where the state says: `initial` first, then the highest
    // CreatedDate loaded.
    assert!(
        api.job_queries()[0].ends_with("FROM Contact WHERE CreatedDate > 2017-01-01T00:00:00Z"),
        "{:?}",
        api.job_queries()
    );
    let highest = pg::scalar(
        &db,
        "SELECT to_char(max(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM salesforce.contact",
    )
    .unwrap();
    salesforce(&api, &db, staging.path()).run().success();
    assert!(
        api.job_queries()[1].ends_with(&format!("WHERE CreatedDate > {highest}")),
        "{:?}",
        api.job_queries()
    );
}

#[test]
fn a_failed_bulk_job_fails_the_run_with_salesforces_message_and_loads_nothing() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("nothing.yaml");
    let text = std::fs::read_to_string(SALESFORCE).unwrap();
    std::fs::write(&spec, text.replace("FROM Contact", "FROM Nothing")).unwrap();
    let run = Sluice::new(["run", spec.to_str().unwrap()])
        .env("SALESFORCE_URL", format!("{}/sfbulk", api.base))
        .env("SALESFORCE_TOKEN", SF_TOKEN)
        .env("SLUICE_STAGING", staging.path())
        .env("DATABASE_URL", &db)
        .run()
        .failure(1);
    assert!(
        run.stderr.contains(
            "resource `contacts`: the export job failed (poll 1 says \"Failed\"): INVALID_TYPE: sObject type 'Nothing' is not supported."
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'salesforce'"
        )
        .as_deref(),
        Some("0")
    );
    assert!(api
        .targets_under("/sfbulk/services/data/v59.0/jobs/query/750R00000000001/results")
        .is_empty());
}

#[test]
fn a_job_that_never_finishes_fails_at_its_timeout_with_the_last_state() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(SALESFORCE)
        .unwrap()
        .replace("timeout: 30m", "timeout: 1200ms")
        .replace("every: 500ms", "every: 300ms")
        .replace("FROM Contact", "FROM Slow");
    let path = dir.path().join("slow.yaml");
    std::fs::write(&path, spec).unwrap();
    let db = dir.path().join("slow.db");
    let run = Sluice::new(["run", path.to_str().unwrap()])
        .env("SALESFORCE_URL", format!("{}/sfbulk", api.base))
        .env("SALESFORCE_TOKEN", SF_TOKEN)
        .env("SLUICE_STAGING", dir.path().join("staging"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .run()
        .failure(1);
    assert!(
        run.stderr
            .contains("the export job was not done after 1 s (4 polls; the last said \"InProgress\")"),
        "{}",
        run.stderr
    );
    assert_eq!(api.job_polls(), vec![4]);
}

#[test]
fn a_shopify_bulk_operation_downloads_its_json_lines_from_another_host_without_credentials() {
    let api = ApiServer::start();
    let files = ApiServer::start_on("127.0.0.2");
    api.files_on(&files.base);
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = Sluice::new(["run", SHOPIFY])
        .env("SHOPIFY_URL", format!("{}/shopify", api.base))
        .env("SHOPIFY_TOKEN", SHOPIFY_TOKEN)
        .env("SLUICE_STAGING", staging.path())
        .env("DATABASE_URL", &db)
        .run()
        .success();
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(*) FILTER (WHERE status = 'ARCHIVED') || '/' || count(*) FILTER (WHERE id LIKE 'gid://shopify/Product/%') FROM shopify.product"
        )
        .as_deref(),
        Some("826/287/826"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains(&format!(
            "resource products: {SHOPIFY_VARIANTS} of {} records left out by `filter`",
            826 + SHOPIFY_VARIANTS
        )),
        "{}",
        run.stdout
    );
    // Create, two polls (RUNNING, COMPLETED) on the shop; the file on the other host,
    // fetched without the shop's token.
    assert_eq!(api.requests().len(), 3);
    let downloads = files.requests();
    assert_eq!(downloads.len(), 1);
    assert!(downloads[0]
        .target
        .starts_with("/shopify-files/bulk-1.jsonl?X-Goog-Algorithm="));
    assert!(
        downloads[0]
            .headers
            .iter()
            .all(|(k, v)| k != "x-shopify-access-token" && k != "authorization" && !v.contains(SHOPIFY_TOKEN)),
        "{:?}",
        downloads[0].headers
    );
}

#[test]
fn a_gzipped_latin_1_csv_file_loads_typed_with_empty_fields_null() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("open.db");
    let run = Sluice::new(["run", OPEN_DATA])
        .env("OPEN_DATA_URL", &api.base)
        .env("SLUICE_STAGING", dir.path().join("staging"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .run()
        .success();
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT count(*), sum(id), count(note), count(*) FILTER (WHERE note = 'Café') FROM character"
        ),
        vec![vec![
            "826".to_string(),
            (826 * 827 / 2).to_string(),
            "82".into(),
            "82".into()
        ]],
        "{}",
        run.stderr
    );
    assert_eq!(
        sqlite_rows(&db, "SELECT name, species, origin FROM character WHERE id = 1"),
        vec![vec!["Rick Sanchez".to_string(), "Human".into(), "Earth (C-137)".into()]]
    );
}

#[test]
fn an_rss_feed_loads_one_row_per_item_with_attributes_text_and_prefixed_elements() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feed.db");
    let run = Sluice::new(["run", FEED])
        .env("FEED_URL", &api.base)
        .env("SLUICE_STAGING", dir.path().join("staging"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .run()
        .success();
    assert_eq!(
        sqlite_rows(&db, "SELECT count(*), count(DISTINCT guid) FROM episode"),
        vec![vec!["51".to_string(), "51".into()]],
        "{}",
        run.stderr
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT title, code, creator, published, description FROM episode WHERE guid = 'ep-1'"
        ),
        vec![vec![
            "Pilot".to_string(),
            "S01E01".into(),
            "Adult Swim".into(),
            "December 2, 2013".into(),
            "<p>19 characters</p>".into()
        ]]
    );
}

/// A spec reading `/dyn/{name}` as `format`, loading `id` and `name` into SQLite.
fn file_spec(dir: &Path, api: &ApiServer, format: &str, extra: &str) -> std::path::PathBuf {
    let spec = format!(
        "version: 1\nname: files\nsource:\n  base_url: {}\n  max_response_size: 4KiB\nstaging:\n  location: file://{}\nwarehouse:\n  url: sqlite://{}\n  schema: files\nresources:\n  - name: rows\n    path: /dyn/rows\n    format: {format}\n{extra}    table:\n      name: row\n      columns:\n        - {{name: id, type: integer, path: $.id}}\n        - {{name: name, type: text, path: $.name}}\n",
        api.base,
        dir.join("staging").display(),
        dir.join("files.db").display()
    );
    let path = dir.join("files.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

#[test]
fn a_csv_row_that_does_not_read_fails_the_run_naming_the_row_and_loads_nothing() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = file_spec(dir.path(), &api, "csv", "");
    api.put("rows", "id,name\n1,a\n2,b\n3\n4,d\n", &[("content-type", "text/csv")]);
    let run = Sluice::new(["run", spec.to_str().unwrap()]).run().failure(1);
    assert!(
        run.stderr.contains("resource `rows`, page 1: the csv body from ")
            && run
                .stderr
                .contains("does not read: row 4: 1 fields where the header has 2 (id, name)"),
        "{}",
        run.stderr
    );
    assert!(sqlite_rows(
        &dir.path().join("files.db"),
        "SELECT name FROM sqlite_master WHERE name = 'row'"
    )
    .is_empty());
    // The same file whole loads every row.
    api.put("rows", "id,name\n1,a\n2,b\n3,c\n4,d\n", &[("content-type", "text/csv")]);
    Sluice::new(["run", spec.to_str().unwrap()]).run().success();
    assert_eq!(
        sqlite_rows(
            &dir.path().join("files.db"),
            "SELECT count(*), group_concat(name, '') FROM row"
        ),
        vec![vec!["4".to_string(), "abcd".into()]]
    );
}

#[test]
fn json_lines_that_break_off_or_grow_past_max_response_size_fail_the_run() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = file_spec(dir.path(), &api, "jsonl", "");
    api.put("rows", "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"na", &[]);
    let run = Sluice::new(["run", spec.to_str().unwrap()]).run().failure(1);
    assert!(run.stderr.contains("does not read: line 2: not JSON"), "{}", run.stderr);
    // 4 KiB is the limit, counted on the decompressed bytes of a gzipped file.
    let mut big = String::new();
    for i in 0..500 {
        big.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"));
    }
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(big.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    assert!(gz.len() < 4096, "{}", gz.len());
    api.put("rows", gz, &[("content-type", "application/gzip")]);
    let run = Sluice::new(["run", spec.to_str().unwrap()]).run().failure(1);
    assert!(
        run.stderr.contains("is larger than max_response_size = 4096 bytes"),
        "{}",
        run.stderr
    );
    assert!(sqlite_rows(
        &dir.path().join("files.db"),
        "SELECT name FROM sqlite_master WHERE name = 'row'"
    )
    .is_empty());
}

#[test]
fn a_streamed_format_refuses_a_paginator_that_reads_a_json_page() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = file_spec(
        dir.path(),
        &api,
        "csv",
        "    paginate: {type: next_url, next: $.next}\n",
    );
    let run = Sluice::new(["validate", spec.to_str().unwrap()]).run().failure(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("files.yaml:15:38: error: resources[0].paginate.next: `next` reads a JSON page, and a `format: csv` body is records only"),
        "{said}"
    );
}

#[test]
fn for_each_starts_one_export_job_per_value_each_read_to_its_end() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(SALESFORCE)
        .unwrap()
        .replace(
            "  - name: contacts\n",
            "  - name: contacts\n    for_each: {values: [Contact, Lead]}\n",
        )
        .replace("FROM Contact", "FROM {item}")
        .replace("every: 500ms", "every: 100ms");
    let path = dir.path().join("each.yaml");
    std::fs::write(&path, spec).unwrap();
    let db = pg::fresh_database();
    let run = Sluice::new(["run", path.to_str().unwrap()])
        .env("SALESFORCE_URL", format!("{}/sfbulk", api.base))
        .env("SALESFORCE_TOKEN", SF_TOKEN)
        .env("SLUICE_STAGING", dir.path().join("staging"))
        .env("DATABASE_URL", &db)
        .run()
        .success();
    let mut queries = api.job_queries();
    queries.sort();
    assert_eq!(queries.len(), 2, "{}", run.stderr);
    assert!(
        queries[0].contains("FROM Contact WHERE") && queries[1].contains("FROM Lead WHERE"),
        "{queries:?}"
    );
    assert_eq!(api.job_polls(), vec![SF_POLLS_IN_PROGRESS + 1; 2]);
    // Each job's three result pages; the same contacts twice, merged on the key.
    assert_eq!(
        api.requests().iter().filter(|r| r.target.contains("/results?")).count(),
        6
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("contacts") && l.split_whitespace().nth(2) == Some("1652")),
        "{}",
        run.stdout
    );
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) FROM salesforce.contact").as_deref(),
        Some("826")
    );
}
