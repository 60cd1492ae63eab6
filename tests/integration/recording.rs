//! `sluice record` and `sluice test`: example specs recorded against the replay API, then
//! tested offline against their recordings (no API server running, no secret set), and the
//! ways a spec can be wrong, each made to fail `sluice test` with the resource, page and
//! column named.

use std::path::Path;

use crate::support::api::ApiServer;
use crate::support::files::{SF_TOKEN, SHOPIFY_TOKEN};
use crate::support::reach::{SESSION_PASSWORD, SESSION_USER};
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

#[test]
fn record_then_test_round_trips_the_example_specs_offline_and_byte_for_byte() {
    let api = ApiServer::start();
    let files = ApiServer::start_on("127.0.0.2");
    api.files_on(&files.base);
    let b = &api.base;
    // (spec, its environment, the secrets in it, record's options)
    let examples: Vec<(&str, Vec<(&str, String)>, &[&str])> = vec![
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
            "examples/specs/session_orders.yaml",
            vec![
                ("SHOP_API", format!("{b}/session/api")),
                ("SHOP_USER", SESSION_USER.into()),
                ("SHOP_PASSWORD", SESSION_PASSWORD.into()),
            ],
            &[],
        ),
    ];
    // The servers of the specs after these number their export jobs and sessions.
    let stateless = 8;
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
        assert_eq!(api.requests().len(), before, "{spec}: sluice test asked the API");
    }
}
