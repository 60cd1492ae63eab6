//! Incremental loading: runs read only what changed since the state saved in the
//! warehouse, the state moves only with committed data and never backwards.

use serde_json::{json, Value};

/// An incremental resource whose start is only in its path (`/dyn/since-{incremental.start}`).
pub const SINCE_IN_PATH: &str = "version: 1\nname: dynamic\nsource: {base_url: \"${API_BASE}\"}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: dynamic}\nresources:\n  - name: events\n    path: /dyn/since-{incremental.start}\n    records: $.results[*]\n    incremental: {cursor: $.n, initial: 5, format: integer}\n    table:\n      name: event\n      write: merge\n      primary_key: [n]\n      columns:\n        - {name: n, type: integer, path: $.n}\n";

use crate::extract::staged_records;
use crate::support::api::ApiServer;
use crate::support::{pg, Sluice};

const SPEC: &str = "examples/specs/github_issues.yaml";

struct Env {
    api: ApiServer,
    db: String,
    staging: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            api: ApiServer::start(),
            db: pg::fresh_database(),
            staging: tempfile::tempdir().unwrap(),
        }
    }

    fn sluice(&self, args: &[&str]) -> Sluice {
        Sluice::new(args.iter().copied())
            .env("GITHUB_API", &self.api.base)
            .env("GITHUB_TOKEN", "gh-token")
            .env("SLUICE_STAGING", self.staging.path())
            .env("DATABASE_URL", &self.db)
    }

    /// Run `args`, returning (requests made, the records this run staged).
    fn step(&self, args: &[&str]) -> (usize, usize) {
        let before_requests = self.api.requests().len();
        let before = self.staged();
        let run = self.sluice(args).run().success();
        let staged = self.staged() - before;
        let _ = run;
        (self.api.requests().len() - before_requests, staged)
    }

    fn staged(&self) -> usize {
        staged_records(self.staging.path(), "github")
            .remove("issues")
            .map_or(0, |r| r.len())
    }

    fn state(&self) -> Option<String> {
        pg::query(
            &self.db,
            "SELECT value FROM _sluice.state WHERE pipeline = 'github' AND resource = 'issues'",
        )
        .pop()
        .and_then(|mut row| row.pop().flatten())
    }

    fn scalar(&self, sql: &str) -> Option<String> {
        pg::scalar(&self.db, sql)
    }

    /// The issues the API holds now, as `number|title|updated_at` lines.
    fn source(&self) -> Vec<String> {
        let mut all = Vec::new();
        self.api.edit_issues(|issues| all = issues.clone());
        let mut lines: Vec<String> = all
            .iter()
            .map(|i| {
                let at = chrono::DateTime::parse_from_rfc3339(i["updated_at"].as_str().unwrap()).unwrap();
                format!(
                    "{}|{}|{}",
                    i["number"],
                    i["title"].as_str().unwrap(),
                    at.timestamp_millis()
                )
            })
            .collect();
        lines.sort();
        lines
    }

    /// The loaded issues, in the same form.
    fn table(&self) -> Vec<String> {
        let mut lines: Vec<String> = pg::query(
            &self.db,
            "SELECT number::text, title, (extract(epoch FROM updated_at) * 1000)::bigint::text FROM github.issue",
        )
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect::<Vec<_>>().join("|"))
        .collect();
        lines.sort();
        lines
    }

    fn edit(&self, number: u64, updated_at: &str, title: &str) {
        self.api.edit_issues(|issues| {
            match issues.iter_mut().find(|i| i["number"] == number) {
                Some(issue) => {
                    issue["updated_at"] = json!(updated_at);
                    issue["title"] = json!(title);
                }
                None => issues.push(json!({"id": 1_000_000_000 + number, "number": number, "title": title, "state": "open", "updated_at": updated_at})),
            }
        });
    }
}

/// The characters' `created` times: the issues' `updated_at` at the start.
fn created() -> Vec<chrono::DateTime<chrono::FixedOffset>> {
    crate::support::recorded("character")
        .iter()
        .map(|c| chrono::DateTime::parse_from_rfc3339(c["created"].as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn runs_read_only_what_changed_and_the_tables_equal_the_source() {
    let env = Env::new();
    // Run 1: everything, from `initial`.
    assert_eq!(env.step(&["run", SPEC]), (9, 826));
    let times = created();
    let newest = *times.iter().max().unwrap();
    let saved = env.state().unwrap();
    assert_eq!(chrono::DateTime::parse_from_rfc3339(&saved).unwrap(), newest);
    let state = env.sluice(&["state", SPEC]).run().success();
    assert!(state.stdout.contains(&saved), "{}", state.stdout);
    // Run 2: three issues changed, one is new; the window starts a minute (`lag`) before
    // the newest loaded, so the issues updated in that minute are read again, no more.
    for (n, title) in [(5, "edited 5"), (6, "edited 6"), (7, "edited 7")] {
        env.edit(n, &format!("2030-01-01T00:00:0{n}Z"), title);
    }
    env.edit(900, "2030-01-01T00:00:10Z", "new issue");
    let again = times
        .iter()
        .filter(|t| **t >= newest - chrono::Duration::minutes(1))
        .count();
    assert_eq!(env.step(&["run", SPEC]), (1, 4 + again));
    assert_eq!(env.scalar("SELECT count(*) FROM github.issue").as_deref(), Some("827"));
    assert_eq!(
        env.scalar("SELECT string_agg(title, ',' ORDER BY number) FROM github.issue WHERE number IN (5, 6, 7, 900)")
            .as_deref(),
        Some("edited 5,edited 6,edited 7,new issue")
    );
    assert_eq!(env.state().as_deref(), Some("2030-01-01T00:00:10Z"));
    assert_eq!(env.table(), env.source(), "the table holds exactly the source's issues");
    let row = env.scalar("SELECT run_id FROM _sluice.state").unwrap();
    assert!(row.starts_with("20"), "{row}");

    // A load that fails leaves the state where it was.
    env.api.edit_issues(|issues| {
        let i = issues.iter_mut().find(|i| i["number"] == 8).unwrap();
        i["number"] = json!("eight");
        i["updated_at"] = json!("2031-01-01T00:00:00Z");
    });
    let failed = env.sluice(&["run", SPEC]).run().failure(1);
    assert!(failed.stderr.contains("\"eight\""), "{}", failed.stderr);
    assert_eq!(env.state().as_deref(), Some("2030-01-01T00:00:10Z"));
    env.api.edit_issues(|issues| {
        let i = issues.iter_mut().find(|i| i["number"] == "eight").unwrap();
        i["number"] = json!(8);
    });
    assert_eq!(env.step(&["run", SPEC]).0, 1);
    assert_eq!(env.state().as_deref(), Some("2031-01-01T00:00:00Z"));

    // --full-refresh reads everything again.
    assert_eq!(env.step(&["run", SPEC, "--full-refresh"]), (9, 827));
    assert_eq!(env.table(), env.source());

    // --reset forgets the state; the next run starts at `initial`.
    let reset = env
        .sluice(&["state", SPEC, "--reset", "--resource", "issues"])
        .run()
        .success();
    assert!(reset.stdout.contains("reset 1 incremental state"), "{}", reset.stdout);
    assert_eq!(env.state(), None);
    let state = env.sluice(&["state", SPEC]).run().success();
    assert!(
        state.stdout.contains("issues") && state.stdout.contains("2000-01-01T00:00:00Z"),
        "{}",
        state.stdout
    );
}

#[test]
fn two_extracts_before_one_load_leave_no_gap_and_old_runs_never_move_the_state_back() {
    let env = Env::new();
    env.step(&["run", SPEC]);
    env.edit(9, "2032-01-01T00:00:01Z", "edited 9");
    let first = env.sluice(&["extract", SPEC]).run().success().run_id();
    env.edit(10, "2032-01-01T00:00:02Z", "edited 10");
    // The state has not moved (nothing was loaded), so the second extract reads the
    // first one's window again, plus what changed since.
    let second = env.sluice(&["extract", SPEC]).run().success().run_id();
    env.sluice(&["load", SPEC, "--run", &second]).run().success();
    assert_eq!(
        env.scalar("SELECT string_agg(title, ',' ORDER BY number) FROM github.issue WHERE number IN (9, 10)")
            .as_deref(),
        Some("edited 9,edited 10")
    );
    assert_eq!(env.state().as_deref(), Some("2032-01-01T00:00:02Z"));
    // Loading the older run afterwards is refused: it would put older rows over newer.
    let refused = env.sluice(&["load", SPEC, "--run", &first]).run().failure(1);
    assert!(
        refused.stderr.contains("would put older records over newer ones"),
        "{}",
        refused.stderr
    );
    assert_eq!(env.state().as_deref(), Some("2032-01-01T00:00:02Z"));
    // Forced, it loads, and the state does not move backwards.
    env.sluice(&["load", SPEC, "--run", &first, "--force"]).run().success();
    assert_eq!(env.state().as_deref(), Some("2032-01-01T00:00:02Z"));
    // Its manifest says which window it read.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(env.staging.path().join(format!("github/_manifests/{first}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["resources"][0]["incremental"]["highest"],
        "2032-01-01T00:00:01Z"
    );
}

#[test]
fn a_limited_run_never_moves_the_state() {
    let env = Env::new();
    env.step(&["run", SPEC]);
    let before = env.state();
    env.edit(9, "2032-01-01T00:00:01Z", "edited 9");
    env.edit(10, "2032-01-01T00:00:02Z", "edited 10");
    let limited = env.sluice(&["run", SPEC, "--limit", "1"]).run().success();
    assert!(
        limited.stdout.contains("the incremental state was not moved"),
        "{}",
        limited.stdout
    );
    assert_eq!(env.state(), before);
    // The next full run reads the whole window again: both edits arrive.
    env.sluice(&["run", SPEC]).run().success();
    assert_eq!(env.state().as_deref(), Some("2032-01-01T00:00:02Z"));
}

#[test]
fn incremental_with_append_is_a_warning_and_bad_settings_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("append.yaml");
    std::fs::write(
        &spec,
        std::fs::read_to_string(SPEC)
            .unwrap()
            .replace("write: merge", "write: append"),
    )
    .unwrap();
    let run = Sluice::new(["validate", spec.to_str().unwrap()]).run().success();
    assert!(
        run.stdout
            .contains("append.yaml:24:19: warning: resources[0].incremental: table `issue` uses `write: append`"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("append.yaml: ok"), "{}", run.stdout);
}

#[test]
fn the_start_goes_into_a_body_field_or_a_placeholder() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    // HubSpot's search with the start in `filters.since`; the cursor is the contact id.
    let hubspot = dir.path().join("hubspot.yaml");
    std::fs::write(
        &hubspot,
        std::fs::read_to_string("examples/specs/hubspot_contacts.yaml").unwrap().replace(
            "    paginate: {type: cursor, cursor: $.paging.next.after, body_field: after}\n",
            "    paginate: {type: cursor, cursor: $.paging.next.after, body_field: after}\n    incremental: {cursor: $.id, body_field: filters.since, initial: 0, format: integer}\n",
        ),
    )
    .unwrap();
    let run = |spec: &std::path::Path| {
        Sluice::new(["run", spec.to_str().unwrap()])
            .env("HUBSPOT_API", &env.api.base)
            .env("HUBSPOT_TOKEN", "hs-token")
            .env("API_BASE", &env.api.base)
            .env("SLUICE_STAGING", env.staging.path())
            .env("DATABASE_URL", &env.db)
            .run()
            .success()
    };
    run(&hubspot);
    let bodies = env.api.bodies();
    assert_eq!(bodies[0]["filters"]["since"], json!(0), "{}", bodies[0]);
    // Every page of the run sends the same start, beside the paginator's `after`.
    assert!(bodies.iter().all(|b| b["filters"]["since"] == json!(0)));
    assert_eq!(bodies[1]["after"], "100");
    run(&hubspot);
    assert_eq!(env.api.bodies()[bodies.len()]["filters"]["since"], json!(826));
    // `{incremental.start}` in the path, with nothing else sending it.
    let spec = dir.path().join("dyn.yaml");
    std::fs::write(&spec, SINCE_IN_PATH).unwrap();
    env.api.put("since-5", r#"{"results": [{"n": 7}, {"n": 9}]}"#, &[]);
    env.api.put("since-9", r#"{"results": [{"n": 9}, {"n": 12}]}"#, &[]);
    run(&spec);
    run(&spec);
    let asked = env.api.targets_under("/dyn/");
    assert_eq!(asked, ["/dyn/since-5", "/dyn/since-9"]);
    assert_eq!(
        env.scalar("SELECT string_agg(n::text, ',' ORDER BY n) FROM dynamic.event")
            .as_deref(),
        Some("7,9,12")
    );
}
