//! Spec reach: date windows, `{now}`, response rules, record filters, list partitions and
//! scalar parents, token logins — each through an example spec against a server shaped as
//! its provider documents, with exact counts.

use chrono::NaiveDate;

use crate::support::api::{ApiServer, Fault};
use crate::support::reach::{REPORT_FROM, REPORT_TO};
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
