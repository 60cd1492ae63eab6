//! Spec reach: date windows, `{now}`, response rules, record filters, list partitions and
//! scalar parents, token logins — each through an example spec against a server shaped as
//! its provider documents, with exact counts.

use chrono::NaiveDate;

use crate::support::api::{ApiServer, Fault};
use crate::support::reach::{
    HN_STORIES, REGIONS, REPORT_FROM, REPORT_TO, SESSION_ORDERS, SESSION_PASSWORD, SESSION_USER, SLACK_JOINS,
    SLACK_MESSAGES, SLACK_TOKEN,
};
use crate::support::{pg, Sluice};

const REPORT: &str = "examples/specs/report_windows.yaml";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The `(start_date, end_date)` of every first-page request to the report, in order.
fn windows_asked(api: &ApiServer) -> Vec<(NaiveDate, NaiveDate)> {
    api.requests()
        .iter()
        .filter(|r| r.target.starts_with("/report/daily?") && r.target.contains("page=1"))
        .map(|r| {
            let q = r.target.split_once('?').unwrap().1;
            let get = |n: &str| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| day(&v))
                    .unwrap()
            };
            (get("start_date"), get("end_date"))
        })
        .collect()
}

fn report_env(api: &ApiServer, db: &str, staging: &std::path::Path, end: &str) -> Sluice {
    Sluice::new(["run", REPORT])
        .env("REPORT_API", &api.base)
        .env("REPORT_TOKEN", "report-token")
        .env("SLUICE_STAGING", staging)
        .env("DATABASE_URL", db)
        .env("REPORT_END", end)
}

#[test]
fn a_three_year_backfill_reads_31_day_windows_in_one_run_without_overlap_or_gap() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = report_env(&api, &db, staging.path(), REPORT_TO).run().success();
    let days = (day(REPORT_TO) - day(REPORT_FROM)).num_days() + 1;
    assert_eq!(days, 1096);
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) || '/' || count(DISTINCT date) || '/' || min(date) || '/' || max(date) FROM adreport.daily_report").as_deref(),
        Some(format!("{days}/{days}/{REPORT_FROM}/{REPORT_TO}").as_str()),
        "{}",
        run.stderr
    );
    // 36 calendar months, each its own request sequence: the first starts at `initial`,
    // each next one the day after the one before ends, the last ends at `end`.
    let asked = windows_asked(&api);
    assert_eq!(asked.len(), 36, "{asked:?}");
    assert_eq!(asked[0].0, day(REPORT_FROM));
    assert_eq!(asked[35].1, day(REPORT_TO));
    for pair in asked.windows(2) {
        assert_eq!(pair[1].0, pair[0].1.succ_opt().unwrap(), "{pair:?}");
    }
    // Every page of every window: 3 or 4 pages of 10 days a month.
    let pages: i64 = asked.iter().map(|(a, b)| ((*b - *a).num_days() + 1 + 9) / 10).sum();
    assert_eq!(api.requests().len() as i64, pages);
    // One load and commit per window, the state at the day after the last.
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) FROM _sluice.runs WHERE pipeline = 'adreport' AND status = 'loaded'"
        )
        .as_deref(),
        Some("36")
    );
    assert_eq!(
        pg::scalar(&db, "SELECT value FROM _sluice.state WHERE pipeline = 'adreport'").as_deref(),
        Some("2025-01-01")
    );
    assert!(run.stdout.contains("36 runs, one per date window"), "{}", run.stdout);
    // Nothing left: the next run asks for nothing.
    let before = api.requests().len();
    report_env(&api, &db, staging.path(), REPORT_TO).run().success();
    assert_eq!(api.requests().len(), before);
}

#[test]
fn a_failed_window_keeps_the_windows_before_it_and_the_next_run_resumes_there() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    // The eleventh month (November 2022) fails for good, after the months before it.
    api.fault(
        "/report/daily?start_date=2022-11-01&end_date=2022-11-30&page=1",
        Fault::Status(400),
        1,
    );
    let failed = report_env(&api, &db, staging.path(), REPORT_TO).run().failure(1);
    assert!(
        failed
            .stderr
            .contains("10 date window round(s) before it were loaded and committed")
            && failed.stderr.contains("`daily` at 2022-11-01"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) || '/' || max(date) FROM adreport.daily_report").as_deref(),
        Some("304/2022-10-31")
    );
    assert_eq!(
        pg::scalar(&db, "SELECT value FROM _sluice.state WHERE pipeline = 'adreport'").as_deref(),
        Some("2022-11-01")
    );
    // The next run starts at the month that failed and loads the rest, once each.
    let before = api.requests().len();
    report_env(&api, &db, staging.path(), REPORT_TO).run().success();
    let resumed = windows_asked(&api);
    let resumed = &resumed[resumed.len() - 26..];
    assert_eq!(resumed[0].0, day("2022-11-01"));
    assert!(api.requests()[before].target.contains("start_date=2022-11-01"));
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(DISTINCT date) FROM adreport.daily_report"
        )
        .as_deref(),
        Some("1096/1096")
    );
}

const SLACK: &str = "examples/specs/slack_messages.yaml";

fn slack(api: &ApiServer, db: &str, staging: &std::path::Path, channel: &str) -> Sluice {
    Sluice::new(["run", SLACK])
        .env("SLACK_API", format!("{}/slack/api", api.base))
        .env("SLACK_TOKEN", SLACK_TOKEN)
        .env("SLACK_CHANNEL", channel)
        .env("SLUICE_STAGING", staging)
        .env("DATABASE_URL", db)
}

#[test]
fn slack_rate_limits_said_with_http_200_are_retried_and_channel_joins_are_filtered_out() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = slack(&api, &db, staging.path(), "C0123456").run().success();
    let kept = SLACK_MESSAGES - SLACK_JOINS;
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(*) FILTER (WHERE text LIKE '%has joined%') FROM slack.message"
        )
        .as_deref(),
        Some(format!("{kept}/0").as_str()),
        "{}",
        run.stderr
    );
    // Three pages; the second answered `ratelimited` once and was asked again.
    assert_eq!(
        api.requests().len(),
        4,
        "{:?}",
        api.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert!(run.stderr.contains("Slack says ratelimited"), "{}", run.stderr);
    // Staging keeps every record; the summary and the ledger count those left out.
    let staged = crate::extract::staged_records(staging.path(), "slack")
        .remove("messages")
        .unwrap();
    assert_eq!(staged.len(), SLACK_MESSAGES);
    assert!(
        run.stdout.contains(&format!(
            "resource messages: {SLACK_JOINS} of {SLACK_MESSAGES} records left out by `filter`"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT resources->0->>'filtered' FROM _sluice.runs WHERE pipeline = 'slack'"
        )
        .as_deref(),
        Some(SLACK_JOINS.to_string().as_str())
    );
}

#[test]
fn a_slack_error_said_with_http_200_fails_the_run_with_slacks_own_words() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let failed = slack(&api, &db, staging.path(), "C-nope").run().failure(1);
    assert!(
        failed.stderr.contains("Slack says channel_not_found"),
        "{}",
        failed.stderr
    );
    // Not retried: `fail` stops at once; nothing was loaded.
    assert_eq!(api.requests().len(), 1);
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'slack'"
        )
        .as_deref(),
        Some("0")
    );
}

#[test]
fn hacker_news_ids_are_scalar_parents_of_their_items() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = Sluice::new(["run", "examples/specs/hackernews_top.yaml"])
        .env("HN_API", format!("{}/hn/v0", api.base))
        .env("SLUICE_STAGING", staging.path())
        .env("DATABASE_URL", &db)
        .run()
        .success();
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(*) FILTER (WHERE listed_id = id) || '/' || min(id) FROM hackernews.story"
        )
        .as_deref(),
        Some(format!("{HN_STORIES}/{HN_STORIES}/9000013").as_str()),
        "{}",
        run.stderr
    );
    assert_eq!(api.requests().len() as u64, 1 + HN_STORIES);
    assert!(api.requests().iter().any(|r| r.target == "/hn/v0/item/9000780.json"));
}

const SESSION: &str = "examples/specs/session_orders.yaml";

fn session(api: &ApiServer, db: &str, staging: &std::path::Path, password: &str) -> Sluice {
    Sluice::new(["run", SESSION])
        .env("SHOP_API", format!("{}/session/api", api.base))
        .env("SHOP_USER", SESSION_USER)
        .env("SHOP_PASSWORD", password)
        .env("SLUICE_STAGING", staging)
        .env("DATABASE_URL", db)
}

#[test]
fn a_session_login_token_is_sent_and_renewed_once_when_the_session_expires() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = session(&api, &db, staging.path(), SESSION_PASSWORD).run().success();
    let refunded = SESSION_ORDERS / 4;
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT count(*) || '/' || count(*) FILTER (WHERE status = 'refunded') FROM shop.\"order\""
        )
        .as_deref(),
        Some(format!("{}/0", SESSION_ORDERS - refunded).as_str()),
        "{}",
        run.stderr
    );
    // Six pages; the token stopped working after four, so the fifth was refused once,
    // sluice logged in again and asked for it again.
    assert_eq!(api.logins(), 2);
    let targets: Vec<String> = api.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets.iter().filter(|t| t.starts_with("/session/api/orders")).count(),
        7,
        "{targets:?}"
    );
    assert_eq!(targets.iter().filter(|t| *t == "/session/api/login").count(), 2);
    // The login's answer goes where the spec says, and only there.
    let orders: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/session/api/orders"))
        .collect();
    assert!(orders.iter().all(|r| r.authorization.is_none()));
    assert_eq!(
        orders
            .last()
            .unwrap()
            .headers
            .iter()
            .find(|(k, _)| k == "x-session-token")
            .map(|(_, v)| v.as_str()),
        Some("sess-2")
    );
    // Neither the password nor a token is in what sluice said.
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(!said.contains(SESSION_PASSWORD) && !said.contains("sess-1") && !said.contains("sess-2"));
}

#[test]
fn a_refused_login_fails_before_any_request_and_keeps_the_password_out_of_the_message() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let failed = session(&api, &db, staging.path(), "wrong-password-123")
        .run()
        .failure(1);
    assert!(
        failed.stderr.contains("cannot log in at") && failed.stderr.contains("HTTP 401"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("check `source.auth.login`"));
    assert!(!failed.stderr.contains("wrong-password-123"));
    assert!(api
        .requests()
        .iter()
        .all(|r| !r.target.starts_with("/session/api/orders")));
}

const REGIONS_SPEC: &str = "examples/specs/region_instances.yaml";

fn regions(api: &ApiServer, db: &str, staging: &std::path::Path) -> Sluice {
    Sluice::new(["run", REGIONS_SPEC])
        .env("CLOUD_API", &api.base)
        .env("CLOUD_TOKEN", "cloud-token")
        .env("CLOUD_ACCOUNT", "acct-42")
        .env("SLUICE_STAGING", staging)
        .env("DATABASE_URL", db)
}

#[test]
fn a_list_partition_requests_each_region_with_the_account_from_the_environment() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let run = regions(&api, &db, staging.path()).run().success();
    let total: usize = REGIONS.iter().map(|(_, n)| n).sum();
    assert_eq!(
        pg::query(&db, "SELECT region, count(*)::text FROM cloud.instance WHERE account = 'acct-42' AND id LIKE region || '-%' GROUP BY region ORDER BY region"),
        vec![vec![Some("eu".to_string()), Some("7".to_string())], vec![Some("us".to_string()), Some("23".to_string())]],
        "{}",
        run.stderr
    );
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) FROM cloud.instance").as_deref(),
        Some(total.to_string().as_str())
    );
    // us: five pages (the fifth says there is no next), eu: two, ap: one empty.
    let targets: Vec<String> = api.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets.len(), 8, "{targets:?}");
    assert!(targets.iter().all(|t| t.contains("/accounts/acct-42/instances")));
    // A partition list that is empty says so instead of loading nothing.
    let failed = regions(&api, &db, staging.path())
        .env("CLOUD_REGIONS", " , ")
        .run()
        .failure(1);
    assert!(
        failed.stderr.contains("`for_each.values` is empty"),
        "{}",
        failed.stderr
    );
}

/// A spec of the small ones: `{now}` in a parameter, a relative `url:` from the parent
/// record, a `${VAR:-}` header, a column `default:`.
const SMALL: &str = "version: 1\nname: small\nsource:\n  base_url: \"${API_BASE}\"\n  headers: {X-Tenant: \"${TENANT:-}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: small}\nresources:\n  - name: files\n    path: /dyn/files\n    params: {since: \"{now - 1d:%Y-%m-%d}\"}\n    headers: {X-Since: \"{now - 1d:%Y-%m-%d}\", X-Optional: \"${NOPE:-}\"}\n    records: $.results[*]\n  - name: contents\n    for_each: files\n    url: \"{parent.file}\"\n    records: $\n    table:\n      name: content\n      columns:\n        - {name: id, type: integer, path: $.id}\n        - {name: name, type: text, path: $.name, default: unnamed}\n        - {name: size, type: integer, path: $.size, default: 0}\n";

#[test]
fn now_relative_urls_unset_headers_and_defaults_do_what_the_spec_says() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("small.yaml");
    std::fs::write(&spec, SMALL).unwrap();
    api.put(
        "files",
        r#"{"results": [{"file": "/dyn/one"}, {"file": "/dyn/two"}]}"#,
        &[],
    );
    api.put("one", r#"{"id": 1, "name": "first", "size": 7}"#, &[]);
    api.put("two", r#"{"id": 2}"#, &[]);
    let staging = dir.path().join("staging");
    let run = Sluice::new(["run", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", &staging)
        .env("DATABASE_URL", &db)
        .run()
        .success();
    assert_eq!(
        pg::query(&db, "SELECT id::text, name, size::text FROM small.content ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("first".into()), Some("7".into())],
            vec![Some("2".into()), Some("unnamed".into()), Some("0".into())]
        ],
        "{}",
        run.stderr
    );
    let requests = api.requests();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(requests[0].target, format!("/dyn/files?since={yesterday}"));
    let header =
        |r: &crate::support::api::Logged, name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header(&requests[0], "x-since"), Some(yesterday.clone()));
    assert_eq!(header(&requests[0], "x-optional"), None);
    // The relative URLs of the parent records went to the base URL's host.
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.target == "/dyn/one" || r.target == "/dyn/two")
            .count(),
        2
    );
    // `${TENANT:-}` unset: no header at all, not an empty one; set: sent.
    assert!(requests.iter().all(|r| r.headers.iter().all(|(k, _)| k != "x-tenant")));
    let before = requests.len();
    Sluice::new(["extract", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", &staging)
        .env("TENANT", "acme")
        .run()
        .success();
    let tenant: Vec<_> = api.requests()[before..]
        .iter()
        .map(|r| r.headers.iter().find(|(k, _)| k == "x-tenant").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(tenant, vec![Some("acme".to_string()); 3]);
}

#[test]
fn a_rate_limit_reset_beyond_max_wait_fails_at_once_and_is_called_a_rate_limit() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: limited\nsource:\n  base_url: \"${API_BASE}\"\n  retry: {max_wait: 2s}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: limited}\nresources:\n  - name: items\n    path: /hcursor/episode\n    records: $.results[*]\n    paginate: {type: cursor, header: X-Next-Cursor, param: c}\n    table:\n      name: item\n      columns:\n        - {name: id, type: integer, path: $.id}\n",
    )
    .unwrap();
    api.fault("/hcursor/episode", Fault::RateLimited { reset_in: 600 }, 1);
    let started = std::time::Instant::now();
    let run = Sluice::new(["extract", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", dir.path())
        .run()
        .failure(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        run.stderr.contains("rate limited (the API's limit is used up)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("longer than retry.max_wait = 2 s"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wants credentials"), "{}", run.stderr);
    assert_eq!(api.requests().len(), 1);
}

#[test]
fn sluice_extract_stages_every_window_in_one_run_and_its_load_moves_the_state_past_the_last() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let staging = tempfile::tempdir().unwrap();
    let with = |s: Sluice| {
        s.env("REPORT_API", &api.base)
            .env("REPORT_TOKEN", "report-token")
            .env("SLUICE_STAGING", staging.path())
            .env("DATABASE_URL", &db)
            .env("REPORT_END", "2022-03-31")
    };
    with(Sluice::new(["extract", REPORT])).run().success();
    assert_eq!(windows_asked(&api).len(), 3);
    let dir = staging.path().join("adreport").join("_manifests");
    let manifests: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(manifests.len(), 1);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifests[0].path()).unwrap()).unwrap();
    assert_eq!(m["resources"][0]["records"], 31 + 28 + 31);
    assert_eq!(m["resources"][0]["incremental"]["windows"], 3);
    assert_eq!(m["resources"][0]["incremental"]["highest"], "2022-04-01");
    with(Sluice::new(["load", REPORT])).run().success();
    assert_eq!(
        pg::scalar(
            &db,
            "SELECT (SELECT count(*) FROM adreport.daily_report) || ' ' || value FROM _sluice.state"
        )
        .as_deref(),
        Some("90 2022-04-01")
    );
}

#[test]
fn a_cursor_read_as_timestamps_is_sent_as_a_strftime_date_with_a_lag_in_days() {
    let api = ApiServer::start();
    let db = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: dated\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: dated}\nresources:\n  - name: events\n    path: /dyn/since-{incremental.start}\n    records: $.results[*]\n    incremental: {cursor: $.updated, cursor_format: rfc3339, format: \"%d.%m.%Y\", initial: \"${EVENTS_FROM:-01.01.2024}\", lag: 1d}\n    table:\n      name: event\n      write: merge\n      primary_key: [id]\n      columns:\n        - {name: id, type: integer, path: $.id}\n        - {name: updated, type: timestamptz, path: $.updated}\n",
    )
    .unwrap();
    api.put("since-01.05.2024", r#"{"results": [{"id": 1, "updated": "2024-05-02T08:00:00Z"}, {"id": 2, "updated": "Fri, 03 May 2024 10:00:00 +0000"}]}"#, &[]);
    api.put(
        "since-02.05.2024",
        r#"{"results": [{"id": 2, "updated": "2024-05-03T10:00:00Z"}]}"#,
        &[],
    );
    let run = |from: Option<&str>| {
        let mut s = Sluice::new(["run", spec.to_str().unwrap()])
            .env("API_BASE", &api.base)
            .env("SLUICE_STAGING", dir.path().join("staging"))
            .env("DATABASE_URL", &db);
        if let Some(f) = from {
            s = s.env("EVENTS_FROM", f);
        }
        s.run().success()
    };
    run(Some("01.05.2024"));
    // The highest cursor (an RFC 2822 time, read as `rfc3339` reads it) saved as the date
    // `format` writes; the next run starts a day before it.
    assert_eq!(
        pg::scalar(&db, "SELECT value FROM _sluice.state").as_deref(),
        Some("03.05.2024")
    );
    run(None);
    let targets: Vec<String> = api.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/dyn/since-01.05.2024", "/dyn/since-02.05.2024"]);
    assert_eq!(
        pg::scalar(&db, "SELECT count(*) FROM dated.event").as_deref(),
        Some("2")
    );
}

#[test]
fn an_oauth2_password_grant_sends_the_user_and_extra_fields_as_json_when_asked() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    let write = |format: &str| {
        std::fs::write(
            &spec,
            format!("version: 1\nname: owner\nsource:\n  base_url: \"${{API_BASE}}\"\n  auth: {{type: oauth2, grant: password, token_url: \"${{API_BASE}}/oauth/token\", client_id: client-id, client_secret: \"${{CLIENT_SECRET}}\", username: owner, password: \"${{OWNER_PASSWORD}}\", extra: {{audience: \"https://api.example.com\"}}{format}}}\nstaging: {{location: \"${{SLUICE_STAGING}}\"}}\nwarehouse: {{url: \"${{DATABASE_URL}}\", schema: owner}}\nresources:\n  - name: items\n    path: /protected/character\n    records: $.results[*]\n    paginate: {{type: page_number, param: page}}\n    table:\n      name: item\n      columns:\n        - {{name: id, type: integer, path: $.id}}\n"),
        )
        .unwrap();
    };
    let run = |password: &str| {
        Sluice::new(["extract", spec.to_str().unwrap()])
            .env("API_BASE", &api.base)
            .env("SLUICE_STAGING", dir.path().join("staging"))
            .env("CLIENT_SECRET", "client-secret")
            .env("OWNER_PASSWORD", password)
            .run()
    };
    for format in ["", ", body_format: json"] {
        write(format);
        let ok = run("owner-pass").success();
        assert!(
            ok.stdout.contains("items                         43        826"),
            "{}",
            ok.stdout
        );
    }
    assert_eq!(api.tokens_issued(), 2);
    let bad = run("not-the-pass").failure(1);
    assert!(bad.stderr.contains("HTTP 401"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("not-the-pass"));
}

#[test]
fn init_writes_a_rule_for_an_ok_envelope_and_explains_scalar_lists_and_ok_false() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let slack = format!("{}/slack/api/conversations.history?channel=C0123456", api.base);
    let out = dir.path().join("slack.yaml");
    let run = Sluice::new([
        "init",
        &slack,
        "--name",
        "slack",
        "--auth",
        "bearer",
        "-o",
        out.to_str().unwrap(),
    ])
    .env("SLACK_TOKEN", SLACK_TOKEN)
    .run()
    .success();
    let spec = std::fs::read_to_string(&out).unwrap();
    assert!(
        spec.contains("    on_response:\n      - {when: {path: $.ok, equals: false}, action: fail, message: \"the API says {$.error}\"}\n"),
        "{spec}\n{}",
        run.stderr
    );
    Sluice::new(["validate", out.to_str().unwrap()]).run().success();
    // Without the token Slack says so with HTTP 200; init says what it said.
    let refused = Sluice::new(["init", &slack]).run().failure(1);
    assert!(
        refused
            .stderr
            .contains("the API answered `ok: false` (it says errors with HTTP 200), error \"invalid_auth\""),
        "{}",
        refused.stderr
    );
    // A bare list of ids is no table, but it is a parent: init says how to use it.
    let ids = Sluice::new(["init", &format!("{}/hn/v0/topstories.json", api.base)])
        .run()
        .failure(1);
    assert!(
        ids.stderr
            .contains("an array of 60 scalars (such as 9000013), not records")
            && ids.stderr.contains("`for_each: <this resource>`"),
        "{}",
        ids.stderr
    );
}
