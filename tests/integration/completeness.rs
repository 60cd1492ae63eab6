//! Complete or failed, never partial: five API shapes written from their providers'
//! documentation (Jira, Salesforce, Airtable, Twilio, Notion). For each, the spec `init`
//! writes loads every record (count and distinct keys), and the same spec with its
//! `paginate` wrong fails with the numbers it saw instead of loading part.

use std::path::Path;

use crate::support::api::ApiServer;
use crate::support::{assert_snapshot, fixture, Sluice};

/// Rows and distinct keys of a table of an SQLite warehouse.
fn rows_and_keys(db: &Path, table: &str, key: &str) -> (i64, i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        &format!("SELECT count(*), count(DISTINCT \"{key}\") FROM \"{table}\""),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or_else(|e| panic!("count {table} in {}: {e}", db.display()))
}

struct Shape<'a> {
    golden: &'a str,
    path: &'a str,
    table: &'a str,
    key: &'a str,
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
}

/// `init` the shape, compare with its golden file, run it: every record loads. Returns
/// the spec's text, the folder, and the test server.
fn init_loads_all(s: &Shape) -> (String, tempfile::TempDir, ApiServer) {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let url = format!("{}{}", api.base, s.path);
    let mut argv: Vec<&str> = vec!["init", &url, "--name", "shapes"];
    argv.extend(s.args);
    argv.extend(["-o", spec.to_str().unwrap()]);
    let mut init = Sluice::new(&argv).dir(dir.path());
    for (k, v) in s.env {
        init = init.env(k, v);
    }
    let init = init.run().success();
    let text = std::fs::read_to_string(&spec).unwrap();
    assert_snapshot(
        &fixture(&format!("init/{}.yaml", s.golden)),
        &text.replace(&api.base, "http://127.0.0.1:PORT"),
    );
    assert!(!text.contains("every record the API has"), "{text}");
    let mut run = Sluice::new(["run", spec.to_str().unwrap()]).dir(dir.path());
    for (k, v) in s.env {
        run = run.env(k, v);
    }
    let run = run.run().success();
    let (rows, keys) = rows_and_keys(&dir.path().join(".sluice/shapes.db"), s.table, s.key);
    assert_eq!((rows, keys), (826, 826), "{}\n{}", init.stderr, run.stderr);
    (text, dir, api)
}

/// The spec with its `paginate:` line replaced, run: it fails, and says `says`.
fn wrong_paginate_fails(s: &Shape, text: &str, dir: &Path, api: &ApiServer, paginate: &str, says: &[&str]) {
    let line = text.lines().find(|l| l.trim_start().starts_with("paginate: ")).unwrap();
    let indent = &line[..line.len() - line.trim_start().len()];
    let wrong = text.replace(line, &format!("{indent}paginate: {paginate}"));
    let spec = dir.join("wrong.yaml");
    std::fs::write(&spec, wrong.replace("http://127.0.0.1:PORT", &api.base)).unwrap();
    let mut run = Sluice::new(["run", spec.to_str().unwrap(), "--full-refresh"]).dir(dir);
    for (k, v) in s.env {
        run = run.env(k, v);
    }
    let run = run.run().failure(1);
    for s in says {
        assert!(run.stderr.contains(s), "`{s}` not in:\n{}", run.stderr);
    }
}

#[test]
fn jira_offsets_advance_by_what_the_capped_pages_held() {
    let s = Shape {
        golden: "jira_issues",
        path: "/jira/rest/api/3/search",
        table: "issues",
        key: "id",
        args: &[],
        env: &[],
    };
    let (text, dir, api) = init_loads_all(&s);
    assert!(
        text.contains(
            "paginate: {type: offset, limit: 50, limit_param: maxResults, offset_param: startAt, total: $.total}"
        ),
        "{text}"
    );
    // Asking for 100 a page of a server that sends 50: every record all the same, the
    // offsets being what was read.
    let asked_100 = text
        .replace("limit: 50,", "limit: 100,")
        .replace("http://127.0.0.1:PORT", &api.base);
    let spec = dir.path().join("hundred.yaml");
    std::fs::write(&spec, asked_100).unwrap();
    let before = api.requests().len();
    Sluice::new(["run", spec.to_str().unwrap(), "--full-refresh"])
        .dir(dir.path())
        .run()
        .success();
    let targets: Vec<String> = api.requests()[before..].iter().map(|r| r.target.clone()).collect();
    assert!(
        targets.contains(&"/jira/rest/api/3/search?maxResults=100&startAt=50".to_string()),
        "{targets:?}"
    );
    assert_eq!(targets.len(), 17, "{targets:?}");
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: none}",
        &["the API reported 826 records (`$.total`), 50 were read"],
    );
}

#[test]
fn salesforce_follows_the_relative_next_records_url_until_done() {
    let s = Shape {
        golden: "salesforce_contacts",
        path: "/salesforce/services/data/v59.0/query?q=SELECT+Id,Name+FROM+Contact",
        table: "query",
        key: "id",
        args: &[],
        env: &[],
    };
    let (text, dir, api) = init_loads_all(&s);
    assert!(text.contains("has_more: {path: $.done, equals: false}"), "{text}");
    // A misspelt next path: the page's `done: false` fails it.
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: next_url, next: $.nextRecordUrl, total: $.totalSize, has_more: {path: $.done, equals: false}}",
        &["page 1: the page says there is more (`$.done` is false) but no next page was found"],
    );
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: none}",
        &["the page says there is more (`$.done` is false) but pagination stopped after 200 records"],
    );
}

#[test]
fn airtable_sends_the_offset_token_back_until_it_is_gone() {
    let s = Shape {
        golden: "airtable_contacts",
        path: "/airtable/v0/appAbc123Def456Gh/Contacts",
        table: "contacts",
        key: "id",
        args: &[],
        env: &[],
    };
    let (text, dir, api) = init_loads_all(&s);
    assert!(
        text.contains("{type: cursor, cursor: $.offset, param: offset}"),
        "{text}"
    );
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: none}",
        &["the page names a next page (`$.offset`) but pagination stopped after 100 records"],
    );
}

#[test]
fn twilio_follows_the_relative_next_page_uri() {
    let s = Shape {
        golden: "twilio_messages",
        path: "/twilio/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
        table: "messages",
        key: "sid",
        args: &[],
        env: &[],
    };
    let (text, dir, api) = init_loads_all(&s);
    assert!(text.contains("{type: next_url, next: $.next_page_uri}"), "{text}");
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: none}",
        &["the page names a next page (`$.next_page_uri`) but pagination stopped after 50 records"],
    );
}

#[test]
fn notion_posts_start_cursor_with_its_version_header_until_has_more_is_false() {
    let s = Shape {
        golden: "notion_query",
        path: "/notion/v1/databases/897e5a76-ae52-4b48-9fdf-e71f5945d1af/query",
        table: "query",
        key: "id",
        args: &[
            "--body",
            "{}",
            "--auth",
            "bearer",
            "--header",
            "Notion-Version: 2022-06-28",
        ],
        env: &[("SHAPES_TOKEN", "notion-secret")],
    };
    let (text, dir, api) = init_loads_all(&s);
    assert!(text.contains("headers: {Notion-Version: \"2022-06-28\"}"), "{text}");
    assert!(text.contains("body_field: start_cursor"), "{text}");
    assert!(text.contains("has_more: $.has_more"), "{text}");
    assert!(!text.contains("notion-secret"), "{text}");
    // The cursor sent where the API does not read it: the same page again, refused as
    // a loop, never 100 of 826 with exit 0.
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: cursor, cursor: $.next_cursor, body_field: cursor}",
        &["pagination points back to"],
    );
    wrong_paginate_fails(
        &s,
        &text,
        dir.path(),
        &api,
        "{type: none}",
        &["the page says there is more (`$.has_more` is true) but pagination stopped after 100 records"],
    );
}

#[test]
fn a_header_must_be_name_colon_value() {
    let run = Sluice::new(["init", "http://127.0.0.1:9/x", "--header", "Notion-Version 2022"])
        .run()
        .failure(2);
    assert!(run.stderr.contains("is not `Name: value`"), "{}", run.stderr);
}

#[test]
fn init_with_oauth2_client_credentials_fetches_a_token_and_writes_placeholders() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let url = format!("{}/protected/character", api.base);
    let token_url = format!("{}/oauth/token", api.base);
    let env = [
        ("SHAPES_CLIENT_ID", "client-id"),
        ("SHAPES_CLIENT_SECRET", "client-secret"),
    ];
    let missing = Sluice::new(["init", &url, "--name", "shapes", "--auth", "oauth2"])
        .run()
        .failure(2);
    assert!(missing.stderr.contains("--token-url"), "{}", missing.stderr);
    let mut init = Sluice::new([
        "init",
        &url,
        "--name",
        "shapes",
        "--auth",
        "oauth2",
        "--token-url",
        &token_url,
        "-o",
        spec.to_str().unwrap(),
    ]);
    for (k, v) in env {
        init = init.env(k, v);
    }
    let init = init.run().success();
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(
        text.contains(&format!(
            "auth: {{type: oauth2, grant: client_credentials, token_url: \"{token_url}\", client_id: \"${{SHAPES_CLIENT_ID}}\", client_secret: \"${{SHAPES_CLIENT_SECRET}}\"}}"
        )),
        "{text}"
    );
    assert!(
        !text.contains("client-secret") && !init.stderr.contains("client-secret"),
        "{text}"
    );
    assert!(api.tokens_issued() >= 1);
    let mut run = Sluice::new(["run", spec.to_str().unwrap()]).dir(dir.path());
    for (k, v) in env {
        run = run.env(k, v);
    }
    run.run().success();
    let (rows, keys) = rows_and_keys(&dir.path().join(".sluice/shapes.db"), "character", "id");
    assert_eq!((rows, keys), (826, 826));
}
