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
