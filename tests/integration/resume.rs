//! Runs that go on: an extraction killed (`kill -9`) at a random page, resumed from its
//! checkpoint, stages exactly the records of a run never stopped, for every paginator
//! kind and a `for_each` spec; a signal checkpoints before the process exits.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::extract::staged_records;
use crate::support::api::ApiServer;
use crate::support::Sluice;

/// A spec of one resource `items` at `path` with `paginate`.
fn paged(path: &str, records: &str, paginate: &str) -> String {
    format!(
        "version: 1\nname: paged\nsource:\n  base_url: \"${{API_BASE}}\"\nstaging:\n  location: \"${{SLUICE_STAGING}}\"\nwarehouse: {{url: \"${{DATABASE_URL}}\", schema: paged}}\nresources:\n  - name: items\n    path: \"{path}\"\n    records: \"{records}\"\n    paginate: {paginate}\n    table:\n      name: item\n      columns:\n        - {{name: id, type: text, path: $.id}}\n"
    )
}

/// `spec` with small parts (a checkpoint follows each) and, when `slow`, a rate limit
/// that gives a kill time to land mid-way.
fn tuned(spec: &str, slow: bool) -> String {
    assert!(spec.contains("source:\n") && spec.contains("staging:\n"), "{spec}");
    let limit = match slow && !spec.contains("  rate_limit:") {
        true => "  rate_limit: {requests_per_second: 25}\n",
        false => "",
    };
    spec.replacen("source:\n", &format!("source:\n{limit}"), 1).replacen(
        "staging:\n",
        "staging:\n  part_size: 1KiB\n",
        1,
    )
}

/// A pseudo-random number in `lo..=hi`, from the clock.
fn random(lo: usize, hi: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    lo + nanos % (hi - lo + 1)
}

/// The records staged of `resource`, as `(id, record)` sorted when `sorted`.
fn staged(dir: &Path, pipeline: &str, resource: &str, sorted: bool) -> Vec<String> {
    let mut out = staged_records(dir, pipeline).remove(resource).unwrap_or_default();
    if sorted {
        out.sort();
    }
    out
}

fn checkpoints(dir: &Path, pipeline: &str) -> usize {
    let root = dir.join(pipeline).join("_checkpoints");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|run| std::fs::read_dir(run.path()).into_iter().flatten().count())
        .sum()
}

/// The newest checkpoint's text.
fn checkpoint_text(dir: &Path, pipeline: &str) -> String {
    let root = dir.join(pipeline).join("_checkpoints");
    let run = std::fs::read_dir(root).unwrap().flatten().next().unwrap().path();
    let save = std::fs::read_dir(run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    std::fs::read_to_string(save).unwrap()
}

struct Case<'a> {
    name: &'a str,
    spec: String,
    pipeline: &'a str,
    resource: &'a str,
    env: &'a [(&'a str, &'a str)],
    /// Records arrive in the order of the pages (not a `for_each`'s parents at once).
    ordered: bool,
}

fn example(name: &str) -> String {
    std::fs::read_to_string(crate::support::root().join(format!("examples/specs/{name}.yaml"))).unwrap()
}

#[test]
fn a_run_killed_at_a_random_page_goes_on_to_exactly_the_records_of_a_clean_run() {
    let api = ApiServer::start();
    let rm = format!("{}/api", api.base);
    let cases = [
        Case {
            name: "next_url",
            spec: paged("/api/character", "$.results[*]", "{type: next_url, next: $.info.next}"),
            pipeline: "paged",
            resource: "items",
            env: &[],
            ordered: true,
        },
        Case {
            name: "page_number (pages fetched at once)",
            spec: paged(
                "/api/character",
                "$.results[*]",
                "{type: page_number, param: page, total_pages: $.info.pages}",
            ),
            pipeline: "paged",
            resource: "items",
            env: &[],
            ordered: true,
        },
        Case {
            name: "offset",
            spec: paged(
                "/jira/rest/api/3/search",
                "$.issues[*]",
                "{type: offset, limit: 50, limit_param: maxResults, offset_param: startAt, total: $.total}",
            ),
            pipeline: "paged",
            resource: "items",
            env: &[],
            ordered: true,
        },
        Case {
            name: "cursor from the last record",
            spec: example("stripe_charges"),
            pipeline: "stripe",
            resource: "charges",
            env: &[("STRIPE_API", "/v1"), ("STRIPE_SECRET_KEY", "sk_test_123")],
            ordered: true,
        },
        Case {
            name: "next URL with stop_when",
            spec: example("zendesk_tickets"),
            pipeline: "zendesk",
            resource: "tickets",
            env: &[
                ("ZENDESK_API", "/api/v2"),
                ("ZENDESK_EMAIL", "me@example.com"),
                ("ZENDESK_API_TOKEN", "zd-token"),
            ],
            ordered: true,
        },
        Case {
            name: "cursor in the body",
            spec: example("hubspot_contacts"),
            pipeline: "hubspot",
            resource: "contacts",
            env: &[("HUBSPOT_API", ""), ("HUBSPOT_TOKEN", "hs-token")],
            ordered: true,
        },
        Case {
            name: "GraphQL cursor in a POST body",
            spec: example("rickandmorty_graphql"),
            pipeline: "rickandmorty_graphql",
            resource: "character",
            env: &[("RICKANDMORTY_GRAPHQL", "")],
            ordered: true,
        },
        Case {
            name: "for_each",
            spec: example("pokeapi_pokemon"),
            pipeline: "pokeapi",
            resource: "pokemon",
            env: &[("POKEAPI", "/pokeapi/api/v2")],
            ordered: false,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let (clean_dir, killed_dir) = (dir.path().join("clean"), dir.path().join("killed"));
        let (clean_spec, slow_spec) = (dir.path().join("clean.yaml"), dir.path().join("slow.yaml"));
        std::fs::write(&clean_spec, tuned(&case.spec, false)).unwrap();
        std::fs::write(&slow_spec, tuned(&case.spec, true)).unwrap();
        let sluice = |args: &[&str], staging: &Path| {
            let mut s = Sluice::new(args).api(&api).env("SLUICE_STAGING", staging);
            for (k, v) in case.env {
                let v = if v.is_empty() || v.starts_with('/') {
                    format!("{}{v}", api.base)
                } else {
                    v.to_string()
                };
                s = s.env(k, v);
            }
            s.env("RICKANDMORTY_BASE_URL", &rm)
        };
        let before = api.requests().len();
        sluice(&["extract", clean_spec.to_str().unwrap()], &clean_dir)
            .run()
            .success();
        let requests = api.requests().len() - before;
        let clean = staged(&clean_dir, case.pipeline, case.resource, !case.ordered);
        assert!(
            clean.len() > 40 && requests >= 4,
            "{}: {} records, {requests} requests",
            case.name,
            clean.len()
        );

        // Killed once a random share of its requests were made and a checkpoint was saved.
        let logs = tempfile::tempdir().unwrap();
        let before = api.requests().len();
        let at = random(requests / 2, requests - 2);
        let mut bg = sluice(&["extract", slow_spec.to_str().unwrap()], &killed_dir).spawn(logs.path());
        let t0 = Instant::now();
        while api.requests().len() - before < at || checkpoints(&killed_dir, case.pipeline) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(30), "{}: {}", case.name, bg.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
        bg.signal("KILL");
        let status = bg.wait();
        assert!(
            status.code().is_none(),
            "{}: it ended before the kill: {}",
            case.name,
            bg.stderr()
        );
        let killed_after = api.requests().len() - before;

        let saved = checkpoint_text(&killed_dir, case.pipeline);
        let before = api.requests().len();
        let resumed = sluice(&["extract", slow_spec.to_str().unwrap(), "--resume"], &killed_dir)
            .run()
            .success();
        let resumed_requests = api.requests().len() - before;
        assert!(
            resumed.stderr.contains("going on from the checkpoint"),
            "{}: {}",
            case.name,
            resumed.stderr
        );
        let got = staged(&killed_dir, case.pipeline, case.resource, !case.ordered);
        assert_eq!(
            got.len(),
            clean.len(),
            "{}: killed after {killed_after} of {requests} requests: {}",
            case.name,
            resumed.stderr
        );
        assert!(
            got == clean,
            "{}: the records differ from a clean run's (killed after {killed_after} requests)",
            case.name
        );
        // It went on: the pages before the checkpoint's were not read again.
        let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
        let at = &saved["resources"][case.resource]["at"];
        if case.ordered {
            let pages_before = at["page"]["pages"].as_u64().unwrap_or(0) as usize;
            assert_eq!(
                resumed_requests,
                requests - pages_before,
                "{}: resumed from {at}",
                case.name
            );
        } else {
            let parents_done = at["parents"]["done"].as_array().map_or(0, |d| {
                d.iter()
                    .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap())
                    .sum::<u64>()
            });
            assert!(
                resumed_requests <= requests - parents_done as usize,
                "{}: {resumed_requests} requests, from {at}",
                case.name
            );
        }
        assert_eq!(
            checkpoints(&killed_dir, case.pipeline),
            0,
            "{}: the checkpoint is removed once the run is complete",
            case.name
        );
        let manifests = std::fs::read_dir(killed_dir.join(case.pipeline).join("_manifests"))
            .unwrap()
            .count();
        assert_eq!(manifests, 1, "{}", case.name);
        // A complete run is not resumed again.
        let again = sluice(&["extract", slow_spec.to_str().unwrap(), "--resume"], &killed_dir)
            .run()
            .failure(1);
        assert!(
            again.stderr.contains("no checkpointed run"),
            "{}: {}",
            case.name,
            again.stderr
        );
    }
}
