//! `sluice record` and `sluice test`: example specs recorded against the replay API, then
//! tested offline against their recordings (no API server running, no secret set), and the
//! ways a spec can be wrong, each made to fail `sluice test` with the resource, page and
//! column named.

use std::path::Path;

use crate::support::api::ApiServer;
use crate::support::files::{SF_TOKEN, SHOPIFY_TOKEN};
use crate::support::reach::{SESSION_PASSWORD, SESSION_USER, SLACK_TOKEN};
use crate::support::Sluice;

/// Record `spec` against `api` with `env` into `dir`, then check the recording holds no
/// secret value of `env`.
fn record(spec: &str, env: &[(&str, String)], dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["record", spec, "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut s = Sluice::new(args);
    for (k, v) in env {
        s = s.env(k, v);
    }
    let run = s.run().success();
    run.stdout
}

fn test(spec: &str, dir: &Path, format: &str) -> crate::support::Run {
    Sluice::new(["test", spec, "--recordings", dir.to_str().unwrap(), "--format", format]).run()
}

/// Every file of a recording folder, as text.
fn recorded_text(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()));
    }
    all
}

/// A spec, its environment and record's options.
type Example<'a> = (&'a str, Vec<(&'a str, String)>, &'a [&'a str]);

#[test]
fn record_then_test_round_trips_the_example_specs_offline_and_byte_for_byte() {
    let api = ApiServer::start();
    let files = ApiServer::start_on("127.0.0.2");
    api.files_on(&files.base);
    let b = &api.base;
    // (spec, its environment, the secrets in it, record's options)
    let examples: Vec<Example> = vec![
        (
            "pipelines/rickandmorty.yaml",
            vec![("RICKANDMORTY_BASE_URL", format!("{b}/api"))],
            &["--pages", "50"],
        ),
        (
            "pipelines/coincap.yaml",
            vec![
                ("COINCAP_BASE_URL", format!("{b}/v3")),
                ("COINCAP_TOKEN", "test-coincap-key-123".into()),
            ],
            &[],
        ),
        (
            "examples/specs/stripe_charges.yaml",
            vec![
                ("STRIPE_API", format!("{b}/v1")),
                ("STRIPE_SECRET_KEY", "sk_test_123".into()),
            ],
            &[],
        ),
        (
            "examples/specs/zendesk_tickets.yaml",
            vec![
                ("ZENDESK_API", format!("{b}/api/v2")),
                ("ZENDESK_EMAIL", "me@example.com".into()),
                ("ZENDESK_API_TOKEN", "zd-token".into()),
            ],
            &[],
        ),
        (
            "examples/specs/hubspot_contacts.yaml",
            vec![("HUBSPOT_API", b.clone()), ("HUBSPOT_TOKEN", "hs-token".into())],
            &[],
        ),
        (
            "examples/specs/rickandmorty_graphql.yaml",
            vec![("RICKANDMORTY_GRAPHQL", b.clone())],
            &[],
        ),
        (
            "examples/specs/pokeapi_pokemon.yaml",
            vec![("POKEAPI", format!("{b}/pokeapi/api/v2"))],
            &["--pages", "1", "--parents", "4"],
        ),
        (
            "examples/specs/jsonplaceholder_comments.yaml",
            vec![("JSONPLACEHOLDER_API", format!("{b}/jsonplaceholder"))],
            &[],
        ),
        (
            "examples/specs/github_issues.yaml",
            vec![("GITHUB_API", b.clone()), ("GITHUB_TOKEN", "gh-token".into())],
            &[],
        ),
        (
            "examples/specs/hackernews_top.yaml",
            vec![("HN_API", format!("{b}/hn/v0"))],
            &["--parents", "4"],
        ),
        (
            "examples/specs/region_instances.yaml",
            vec![
                ("CLOUD_API", b.clone()),
                ("CLOUD_TOKEN", "cloud-token".into()),
                ("CLOUD_ACCOUNT", "acct-42".into()),
            ],
            &[],
        ),
        (
            "examples/specs/report_windows.yaml",
            vec![
                ("REPORT_API", b.clone()),
                ("REPORT_TOKEN", "report-token".into()),
                ("REPORT_END", "2022-03-31".into()),
            ],
            &[],
        ),
        (
            "examples/specs/salesforce_bulk.yaml",
            vec![
                ("SALESFORCE_URL", format!("{b}/sfbulk")),
                ("SALESFORCE_TOKEN", SF_TOKEN.into()),
            ],
            &[],
        ),
        (
            "examples/specs/shopify_bulk.yaml",
            vec![
                ("SHOPIFY_URL", format!("{b}/shopify")),
                ("SHOPIFY_TOKEN", SHOPIFY_TOKEN.into()),
            ],
            &[],
        ),
        (
            "examples/specs/open_data_csv.yaml",
            vec![("OPEN_DATA_URL", b.clone())],
            &[],
        ),
        ("examples/specs/episode_feed.yaml", vec![("FEED_URL", b.clone())], &[]),
        (
            "examples/specs/slack_messages.yaml",
            vec![
                ("SLACK_API", format!("{b}/slack/api")),
                ("SLACK_TOKEN", SLACK_TOKEN.into()),
                ("SLACK_CHANNEL", "C0123456".into()),
            ],
            &[],
        ),
        (
            "examples/specs/session_orders.yaml",
            vec![
                ("SHOP_API", format!("{b}/session/api")),
                ("SHOP_USER", SESSION_USER.into()),
                ("SHOP_PASSWORD", SESSION_PASSWORD.into()),
            ],
            &[],
        ),
    ];
    // The servers of the specs after these number their export jobs and sessions, or
    // answer a first request with a rate limit.
    let stateless = 12;
    for (i, (spec, env, extra)) in examples.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        let said = record(spec, env, &first, extra);
        assert!(said.contains("recorded "), "{spec}: {said}");
        // Deterministic: the same answers give the same bytes (the index differs only in
        // the time of the recording).
        let again = dir.path().join("again");
        record(spec, env, &again, extra);
        for e in std::fs::read_dir(&first).unwrap().filter(|_| i < stateless) {
            let name = e.unwrap().file_name();
            let read = |d: &Path| String::from_utf8_lossy(&std::fs::read(d.join(&name)).unwrap()).into_owned();
            let (a, b) = (read(&first), read(&again));
            let timeless = |t: &str| {
                t.lines()
                    .filter(|l| !l.contains("\"now\""))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(
                timeless(&a),
                timeless(&b),
                "{spec}: {name:?} differs between two recordings"
            );
        }
        // No secret value is written.
        let text = recorded_text(&first);
        for (k, v) in env
            .iter()
            .filter(|(k, _)| k.contains("TOKEN") || k.contains("KEY") || k.contains("PASSWORD") || k.contains("USER"))
        {
            assert!(!text.contains(v.as_str()), "{spec}: the recording holds {k}");
        }
        // Offline: the API is not asked again.
        let before = api.requests().len();
        let run = test(spec, &first, "human");
        assert_eq!(run.code, 0, "{spec}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains(": ok: "), "{spec}: {}", run.stdout);
        if spec.contains("report_windows") {
            // Every date window to REPORT_END is recorded and read, each to the page cap
            // (3 pages of 10 days: 30 of January's 31, February's 28, 30 of March's 31).
            let line = "9 of 9 recorded exchanges served, rows loaded: daily_report 88";
            assert!(run.stdout.contains(line), "{spec}: `{line}` not in {}", run.stdout);
        }
        assert_eq!(api.requests().len(), before, "{spec}: sluice test asked the API");
    }
}

/// A small spec of the characters, 20 a page, with expectations; `change` edits its text.
fn characters_spec(dir: &Path, change: &[(&str, &str)]) -> String {
    let mut text = r#"version: 1
name: characters
source:
  base_url: ${API_BASE}/api
  auth: none
staging:
  location: file://.sluice/staging
warehouse:
  url: sqlite://.sluice/characters.db
  schema: characters
resources:
  - name: character
    path: /character
    records: $.results[*]
    paginate: {type: next_url, next: $.info.next}
    table:
      name: character
      write: merge
      primary_key: [id]
      expect: {rows: {min: 60, max: 60}}
      columns:
        - {name: id, type: bigint, path: $.id, expect: {unique: true, range: {min: 1, max: 826}}}
        - {name: name, type: text, path: $.name, expect: {max_null_fraction: 0}}
        - {name: status, type: text, path: $.status, expect: {accepted_values: [Alive, Dead, unknown]}}
        - {name: species, type: text, path: $.species}
        - {name: created, type: timestamptz, path: $.created, expect: {range: {min: "2017-11-04", max: "2018-01-01"}}}
"#
    .to_string();
    for (from, to) in change {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("characters.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_spec_that_is_wrong_in_each_way_fails_sluice_test_naming_the_resource_page_and_column() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    let spec = characters_spec(dir.path(), &[]);
    let said = record(&spec, &[("API_BASE", api.base.clone())], &rec, &[]);
    assert!(said.contains("recorded 3 exchanges"), "{said}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("recording.json")).unwrap()).unwrap();
    let urls: Vec<&str> = index["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["url"].as_str().unwrap())
        .collect();
    assert!(urls[2].ends_with("/api/character?page=3"), "{urls:?}");
    // The spec as recorded passes, with its expectations, offline.
    let ok = test(&spec, &rec, "human");
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout
            .contains("3 of 3 recorded exchanges served, rows loaded: character 60"),
        "{}",
        ok.stdout
    );
    let cases: [(&str, &str, Vec<&str>); 6] = [
        (
            "records path",
            "records: $.results[*]",
            vec!["resource `character`, page 1: `records: $.result[*]` matches nothing", "did you mean `records: $.results[*]`?"],
        ),
        (
            "early stop",
            "paginate: {type: next_url, next: $.info.next}",
            vec!["resource `character` page 2: the recorded GET ", "/api/character?page=2 (HTTP 200) was never requested"],
        ),
        ("misspelt column", "path: $.species", vec!["column `species` of table `character`: `path: $.speceis` matched nothing in 60 rows; did you mean `$.species`?"]),
        ("bad type", "{name: name, type: text", vec!["record 1: column `name` of table `character`: \"Rick Sanchez\" is not a 64-bit integer"]),
        (
            "failed expectation",
            "accepted_values: [Alive, Dead, unknown]",
            vec!["table `character` column `status`: 12 rows hold a value outside `accepted_values` [Alive, Dead]", "`unknown`"],
        ),
        (
            "unexpected request",
            "path: /character",
            vec![
                "resource `character` page 1: GET ",
                "/api/character?status=alive is not in the recording; the nearest recorded is GET ",
                "/api/character",
            ],
        ),
    ];
    let replacement = |what: &str| match what {
        "records path" => "records: $.result[*]",
        "early stop" => "paginate: {type: none}",
        "misspelt column" => "path: $.speceis",
        "bad type" => "{name: name, type: bigint",
        "failed expectation" => "accepted_values: [Alive, Dead]",
        _ => "path: /character\n    params: {status: alive}",
    };
    for (what, from, says) in cases {
        let spec = characters_spec(dir.path(), &[(from, replacement(what))]);
        let run = test(&spec, &rec, "human");
        assert_eq!(run.code, 1, "{what}: {}{}", run.stdout, run.stderr);
        for s in says {
            assert!(run.stdout.contains(s), "{what}: `{s}` not in\n{}", run.stdout);
        }
        assert!(run.stdout.contains("0 of 1 specs passed"), "{what}: {}", run.stdout);
    }
    // For CI: JUnit XML with the failure in the resource's test case, and GitHub annotations.
    let spec = characters_spec(
        dir.path(),
        &[(
            "paginate: {type: next_url, next: $.info.next}",
            "paginate: {type: none}",
        )],
    );
    let junit = test(&spec, &rec, "junit");
    assert_eq!(junit.code, 1);
    let doc = roxmltree::Document::parse(&junit.stdout).unwrap();
    let failed: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && n.children().any(|c| c.has_tag_name("failure")))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    // The run's own error (the page names a next page) and the unread pages of the resource.
    assert_eq!(failed, ["pipeline", "character"], "{}", junit.stdout);
    assert_eq!(doc.root_element().attribute("failures"), Some("2"));
    let github = test(&spec, &rec, "github");
    assert!(
        github.stdout.contains(&format!(
            "::error file={spec},title=sluice test (unused)::resource `character` page 2: "
        )),
        "{}",
        github.stdout
    );
    // A recording of another pipeline is refused.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&spec)
            .unwrap()
            .replace("name: characters", "name: others"),
    )
    .unwrap();
    let run = test(other.to_str().unwrap(), &rec, "human");
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("is a recording of pipeline `characters`, not of `others`"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_recording_of_an_api_that_echoes_the_token_back_does_not_hold_it() {
    let api = ApiServer::start();
    let token = "echo-token-5f2a9c";
    api.put(
        "echo",
        format!(
            r#"{{"results": [{{"id": 1, "note": "you sent Bearer {token}"}}], "echoed": "/dyn/echo?key={token}"}}"#
        ),
        &[("x-echo", &format!("Bearer {token}"))],
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("echo.yaml");
    std::fs::write(
        &spec,
        r#"version: 1
name: echo
source:
  base_url: ${API_BASE}
  auth: {type: bearer, token: "${ECHO_TOKEN}"}
  params: {key: "${ECHO_TOKEN}"}
staging:
  location: file://.sluice/staging
warehouse:
  url: sqlite://.sluice/echo.db
  schema: echo
resources:
  - name: note
    path: /dyn/echo
    records: $.results[*]
    table:
      name: note
      columns:
        - {name: id, type: bigint, path: $.id}
        - {name: note, type: text, path: $.note}
"#,
    )
    .unwrap();
    let rec = dir.path().join("recording");
    let spec = spec.to_str().unwrap();
    record(
        spec,
        &[("API_BASE", api.base.clone()), ("ECHO_TOKEN", token.into())],
        &rec,
        &[],
    );
    let text = recorded_text(&rec);
    assert!(!text.contains(token), "{text}");
    assert!(
        text.contains("you sent Bearer ****") && text.contains("key=****"),
        "{text}"
    );
    assert!(text.contains("\"ECHO_TOKEN\""), "the secret is named: {text}");
    // Tested without the token: a stand-in is sent, and the answers match.
    let run = test(spec, &rec, "json");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let result: serde_json::Value = serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
    assert_eq!(result["result"]["tables"], serde_json::json!([["note", 1]]));
}

/// The reference pipelines ship recordings of their APIs' real pages (the fixtures the other
/// tests serve, with the real hosts in every URL), so `sluice test pipelines/*.yaml` passes
/// from the project folder with nothing set. The shipped files are what `sluice record`
/// writes today from those pages; `SLUICE_BLESS=1` rewrites them.
#[test]
fn the_reference_pipelines_pass_sluice_test_against_their_shipped_recordings() {
    let api = ApiServer::start();
    let b = &api.base;
    let pipelines = [
        (
            "rickandmorty",
            "RICKANDMORTY_BASE_URL",
            format!("{b}/api"),
            "https://rickandmortyapi.com/api",
            &["--pages", "50"][..],
        ),
        (
            "coincap",
            "COINCAP_BASE_URL",
            format!("{b}/v3"),
            "https://rest.coincap.io/v3",
            &[][..],
        ),
    ];
    for (name, var, local, real, extra) in pipelines {
        let spec = format!("pipelines/{name}.yaml");
        let dir = tempfile::tempdir().unwrap();
        let env = [
            (var, local.clone()),
            ("COINCAP_TOKEN", "test-coincap-key-123".to_string()),
        ];
        record(&spec, &env, dir.path(), extra);
        // As recorded against the real host at a fixed time, with the host's default URL.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap().replace(&local, real);
            std::fs::write(&path, text).unwrap();
        }
        let index = dir.path().join("recording.json");
        let mut recording: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
        recording["now"] = "2026-12-01T06:00:00.000000Z".into();
        recording["variables"].as_object_mut().unwrap().remove(var);
        std::fs::write(&index, serde_json::to_string_pretty(&recording).unwrap() + "\n").unwrap();
        assert!(
            !recorded_text(dir.path()).contains("127.0.0.1"),
            "{name}: a local URL is left"
        );
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/recordings")
            .join(name);
        let files = |d: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(d)
                .map(|r| r.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            names.sort();
            names
        };
        if std::env::var_os("SLUICE_BLESS").is_some() {
            let _ = std::fs::remove_dir_all(&shipped);
            std::fs::create_dir_all(&shipped).unwrap();
            for f in files(dir.path()) {
                std::fs::copy(dir.path().join(&f), shipped.join(&f)).unwrap();
            }
        }
        assert_eq!(
            files(&shipped),
            files(dir.path()),
            "{name}: the shipped recording's files differ (SLUICE_BLESS=1 rewrites them)"
        );
        for f in files(dir.path()) {
            let read = |d: &Path| std::fs::read_to_string(d.join(&f)).unwrap();
            assert!(
                read(&shipped) == read(dir.path()),
                "{name}: shipped {f:?} differs from a new recording (SLUICE_BLESS=1 rewrites it)"
            );
        }
    }
    // Offline, from the project folder, with the default recordings folder and nothing set;
    // the recordings hold every record of the real pages.
    let said = passes_offline(
        &api,
        Sluice::new(["test", "pipelines/rickandmorty.yaml", "pipelines/coincap.yaml"]),
    );
    for line in [
        "pipelines/rickandmorty.yaml: ok: 52 of 52 recorded exchanges served, rows loaded: location 126, episode 51, character 826, appearance 1267",
        "pipelines/coincap.yaml: ok: 2 of 2 recorded exchanges served, rows loaded: exchange_snapshot 73",
    ] {
        assert!(said.contains(line), "`{line}` not in\n{said}");
    }
}

/// Run `sluice test` and check it passed without asking the API; what it printed.
fn passes_offline(api: &ApiServer, test: Sluice) -> String {
    let before = api.requests().len();
    let run = test.run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(api.requests().len(), before, "sluice test asked the API");
    run.stdout
}

/// `init --record` writes the spec and its first recording (2 pages a resource), so the new
/// spec passes `sluice test` offline at once, read to the same 2 pages.
#[test]
fn init_record_gives_a_new_spec_its_first_test() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/api/character", api.base);
    let made = Sluice::new(["init", &url, "-o", "spec.yaml", "--record"])
        .dir(dir.path())
        .run()
        .success();
    assert!(made.stdout.contains("recorded 2 exchanges"), "{}", made.stdout);
    assert!(made.stdout.contains("next: sluice test spec.yaml"), "{}", made.stdout);
    let recording = dir.path().join("tests/recordings");
    let index = std::fs::read_dir(&recording)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("recording.json");
    assert!(index.is_file(), "no recording in {}", recording.display());
    let said = passes_offline(&api, Sluice::new(["test", "spec.yaml"]).dir(dir.path()));
    let line = "spec.yaml: ok: 2 of 2 recorded exchanges served, rows loaded: character 40";
    assert!(said.contains(line), "`{line}` not in\n{said}");
}

/// An incremental spec's second run: recorded `--after` the first (which is replayed to
/// give the state the real request starts from), then tested after it. Alone, from
/// `initial`, the second run asks what was not recorded; an `after` that names no
/// recording is an error naming it.
#[test]
fn a_run_recorded_after_another_tests_an_incremental_second_run() {
    let api = ApiServer::start();
    api.put("since-5", r#"{"results": [{"n": 7}, {"n": 9}]}"#, &[]);
    api.put("since-9", r#"{"results": [{"n": 9}, {"n": 12}]}"#, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("dyn.yaml");
    std::fs::write(&spec, crate::incremental::SINCE_IN_PATH).unwrap();
    let spec = spec.to_str().unwrap();
    let (first, second) = (dir.path().join("rec/dynamic"), dir.path().join("rec/dynamic-second"));
    let env = [("API_BASE", api.base.clone())];
    record(spec, &env, &first, &[]);
    record(spec, &env, &second, &["--after", first.to_str().unwrap()]);
    assert_eq!(api.targets_under("/dyn/"), ["/dyn/since-5", "/dyn/since-9"]);
    let index = second.join("recording.json");
    let text = std::fs::read_to_string(&index).unwrap();
    assert!(text.contains("\"after\": \"../dynamic\""), "{text}");
    let tested = |rec: &Path| Sluice::new(["test", spec, "--recordings", rec.to_str().unwrap()]);
    let said = passes_offline(&api, tested(&second));
    let line = "ok: 1 of 1 recorded exchanges served, rows loaded: event 2";
    assert!(said.contains(line), "`{line}` not in\n{said}");
    passes_offline(&api, tested(&first));
    // From `initial`, the second run would ask for what the first run read.
    std::fs::write(&index, text.replace("  \"after\": \"../dynamic\",\n", "")).unwrap();
    let alone = tested(&second).run().failure(1);
    let said = format!(
        "resource `events` page 1: GET {}/dyn/since-5 is not in the recording; the nearest recorded is GET {}/dyn/since-9",
        api.base, api.base
    );
    assert!(alone.stdout.contains(&said), "`{said}` not in\n{}", alone.stdout);
    std::fs::write(&index, text.replace("../dynamic", "../gone")).unwrap();
    let gone = tested(&second).run().failure(1);
    assert!(
        gone.stderr.contains("rec/dynamic-second/../gone/recording.json")
            || gone.stdout.contains("rec/dynamic-second/../gone/recording.json"),
        "{}\n{}",
        gone.stdout,
        gone.stderr
    );
}
