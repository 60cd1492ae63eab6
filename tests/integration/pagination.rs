//! Pagination of the APIs real users have: tokens from the last record or a header,
//! `stop_when`, and an empty page that ends any paginator.

use crate::extract::staged_records;
use crate::support::api::{ApiServer, Fault};
use crate::support::Sluice;

/// Extract `path` with `paginate`, records at `records`; (staged ids, requests made).
fn extract(api: &ApiServer, path: &str, records: &str, paginate: &str) -> (Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("paged.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\nname: paged\nsource:\n  base_url: \"${{API_BASE}}\"\n  retry: {{max_attempts: 3, initial_backoff: 10ms, max_backoff: 2s}}\nstaging: {{location: \"${{SLUICE_STAGING}}\"}}\nwarehouse: {{url: \"${{DATABASE_URL}}\", schema: paged}}\nresources:\n  - name: items\n    path: \"{path}\"\n    records: \"{records}\"\n    paginate: {paginate}\n    table:\n      name: item\n      columns:\n        - {{name: id, type: text, path: $.id}}\n"
        ),
    )
    .unwrap();
    let before = api.requests().len();
    let staging = dir.path().join("staging");
    Sluice::new(["extract", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", &staging)
        .run()
        .success();
    let ids = staged_records(&staging, "paged")
        .remove("items")
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["id"].to_string())
        .collect();
    (ids, api.requests().len() - before)
}

fn distinct(ids: &[String]) -> usize {
    ids.iter().collect::<std::collections::HashSet<_>>().len()
}

#[test]
fn stripe_pages_by_the_last_record_and_stops_on_has_more() {
    let api = ApiServer::start();
    for paginate in [
        "{type: cursor, last_record: $.id, param: starting_after, stop_when: {path: $.has_more, equals: false}}",
        // The token read from the page's records: the paginator sees the whole page.
        "{type: cursor, cursor: \"$.data[-1].id\", param: starting_after, stop_when: {path: $.has_more, equals: false}}",
    ] {
        let (ids, requests) = extract(&api, "/stripe/charges?limit=100", "$.data[*]", paginate);
        assert_eq!((ids.len(), distinct(&ids)), (826, 826), "{paginate}");
        assert_eq!(requests, 9, "{paginate}");
    }
}

#[test]
fn zendesk_stops_on_end_of_stream_although_after_url_is_never_null() {
    let api = ApiServer::start();
    let (ids, requests) = extract(
        &api,
        "/zendesk/tickets?cursor=0",
        "$.tickets[*]",
        "{type: next_url, next: $.after_url, stop_when: {path: $.end_of_stream, equals: true}}",
    );
    assert_eq!((ids.len(), distinct(&ids), requests), (826, 826, 9));
    // Without stop_when, the empty page after the last one ends it cleanly.
    let (ids, requests) = extract(
        &api,
        "/zendesk/tickets?cursor=0",
        "$.tickets[*]",
        "{type: next_url, next: $.after_url}",
    );
    assert_eq!((ids.len(), requests), (826, 10));
}

#[test]
fn a_cursor_may_come_from_a_header() {
    let api = ApiServer::start();
    let (ids, requests) = extract(
        &api,
        "/hcursor/character",
        "$.results[*]",
        "{type: cursor, header: X-Next-Cursor, param: c}",
    );
    assert_eq!((ids.len(), distinct(&ids), requests), (826, 826, 42));
}

#[test]
fn a_rate_limited_403_waits_for_the_reset_and_on_status_is_configurable() {
    let api = ApiServer::start();
    api.fault("/hcursor/episode", Fault::RateLimited { reset_in: 1 }, 1);
    let (ids, requests) = extract(
        &api,
        "/hcursor/episode",
        "$.results[*]",
        "{type: cursor, header: X-Next-Cursor, param: c}",
    );
    assert_eq!((ids.len(), requests), (51, 4), "one 403, then three pages");
    // 500 is retried by default; with on_status: [503] it is not.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: paged\nsource:\n  base_url: \"${API_BASE}\"\n  retry: {max_attempts: 3, initial_backoff: 10ms, on_status: [503]}\nstaging: {location: \"${SLUICE_STAGING}\"}\nwarehouse: {url: \"${DATABASE_URL}\", schema: paged}\nresources:\n  - name: items\n    path: /hcursor/location\n    records: $.results[*]\n    table:\n      name: item\n      columns:\n        - {name: id, type: integer, path: $.id}\n",
    )
    .unwrap();
    api.fault("/hcursor/location", Fault::Status(500), 1);
    let run = Sluice::new(["extract", spec.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", dir.path())
        .run()
        .failure(1);
    assert!(run.stderr.contains("failed with HTTP 500: "), "{}", run.stderr);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

#[test]
fn a_graphql_api_pages_through_a_cursor_in_the_body() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = |query: &str| {
        let path = dir.path().join("graphql.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: paged\nsource:\n  base_url: \"${{API_BASE}}\"\nstaging: {{location: \"${{SLUICE_STAGING}}\"}}\nwarehouse: {{url: \"${{DATABASE_URL}}\", schema: paged}}\nresources:\n  - name: items\n    path: /graphql\n    method: POST\n    body: {{query: \"{query}\", variables: {{first: 25, tag: \"${{TAG}}\"}}}}\n    records: $.data.characters.nodes[*]\n    paginate: {{type: cursor, cursor: $.data.characters.pageInfo.endCursor, body_field: variables.after, stop_when: {{path: $.data.characters.pageInfo.hasNextPage, equals: false}}}}\n    table:\n      name: item\n      columns:\n        - {{name: id, type: text, path: $.id}}\n"
            ),
        )
        .unwrap();
        path
    };
    let staging = dir.path().join("staging");
    let good = spec("query($first: Int, $after: String) { characters(first: $first, after: $after) { nodes { id name } pageInfo { hasNextPage endCursor } } }");
    Sluice::new(["extract", good.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", &staging)
        .env("TAG", "from-env")
        .run()
        .success();
    let ids = staged_records(&staging, "paged").remove("items").unwrap();
    assert_eq!(ids.len(), 826);
    assert_eq!(api.requests().len(), 34, "826 / 25 pages");
    let bad = spec("{ episodes }");
    let run = Sluice::new(["extract", bad.to_str().unwrap()])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", &staging)
        .env("TAG", "from-env")
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("resource `items`, page 1: the API answered with errors and no data: \"Cannot query field on type Query: { episodes }\""),
        "{}",
        run.stderr
    );
}

#[test]
fn oauth2_tokens_are_fetched_once_renewed_after_a_401_and_never_shown() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = |auth: &str| {
        let path = dir.path().join(format!("oauth-{}.yaml", auth.len()));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: paged\nsource:\n  base_url: \"${{API_BASE}}\"\n  auth: {auth}\n  retry: {{max_attempts: 2, initial_backoff: 10ms}}\nstaging: {{location: \"${{SLUICE_STAGING}}\"}}\nwarehouse: {{url: \"${{DATABASE_URL}}\", schema: paged}}\nresources:\n  - name: items\n    path: /protected/character\n    records: $.results[*]\n    paginate: {{type: page_number, param: page}}\n    table:\n      name: item\n      columns:\n        - {{name: id, type: integer, path: $.id}}\n"
            ),
        )
        .unwrap();
        path
    };
    let staging = dir.path().join("staging");
    let run = |spec: &std::path::Path, secret: &str| {
        Sluice::new(["extract", spec.to_str().unwrap()])
            .env("API_BASE", &api.base)
            .env("SLUICE_STAGING", &staging)
            .env("CLIENT_SECRET", secret)
            .env("REFRESH_TOKEN", "rt-good")
            .run()
    };
    let client_credentials = spec("{type: oauth2, grant: client_credentials, token_url: \"${API_BASE}/oauth/token\", client_id: client-id, client_secret: \"${CLIENT_SECRET}\", scopes: [read]}");
    // One token for the whole resource; a 401 on page 7 renews it once.
    api.fault("/protected/character?page=7", Fault::Status(401), 1);
    let ok = run(&client_credentials, "client-secret").success();
    assert!(
        ok.stdout.contains("items                         43        826"),
        "{}",
        ok.stdout
    );
    assert_eq!(api.tokens_issued(), 2);
    assert!(!ok.stderr.contains("tok-"), "{}", ok.stderr);
    // The refresh-token grant.
    let refresh = spec("{type: oauth2, grant: refresh_token, token_url: \"${API_BASE}/oauth/token\", client_id: client-id, client_secret: \"${CLIENT_SECRET}\", refresh_token: \"${REFRESH_TOKEN}\"}");
    run(&refresh, "client-secret").success();
    assert_eq!(api.tokens_issued(), 3);
    // A refused client: one readable line, no secret.
    let bad = run(&client_credentials, "wrong-secret").failure(1);
    assert!(
        bad.stderr
            .contains("resource `items`, page 1: cannot get an OAuth2 access token from http://")
            && bad.stderr.contains(
                "/oauth/token: HTTP 401: {\"error\":\"invalid_client\"}; check `source.auth` (client id, secret)"
            ),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("wrong-secret"), "{}", bad.stderr);
}

#[test]
fn the_example_specs_load_exactly_what_their_test_servers_hold() {
    let api = ApiServer::start();
    // (spec, base URL variable, base URL path, staged resource, records, requests)
    let examples = [
        ("stripe_charges", "STRIPE_API", "/v1", "charges", 826, 9),
        ("zendesk_tickets", "ZENDESK_API", "/api/v2", "tickets", 826, 9),
        ("hubspot_contacts", "HUBSPOT_API", "", "contacts", 826, 9),
        ("rickandmorty_graphql", "RICKANDMORTY_GRAPHQL", "", "character", 826, 42),
        // 3 pages of the list, then one detail request per entry.
        ("pokeapi_pokemon", "POKEAPI", "/pokeapi/api/v2", "pokemon", 51, 3 + 51),
    ];
    for (name, var, prefix, resource, records, requests) in examples {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("examples/specs/{name}.yaml");
        Sluice::new(["validate", &spec]).run().success();
        let before = api.requests().len();
        let run = Sluice::new(["extract", &spec])
            .env(var, format!("{}{prefix}", api.base))
            .env("SLUICE_STAGING", dir.path())
            .env("STRIPE_SECRET_KEY", "sk_test_123")
            .env("ZENDESK_EMAIL", "me@example.com")
            .env("ZENDESK_API_TOKEN", "zd-token")
            .env("GITHUB_TOKEN", "gh-token")
            .env("HUBSPOT_TOKEN", "hs-token")
            .run()
            .success();
        let pipeline = name.split('_').next().unwrap();
        let pipeline = if name == "rickandmorty_graphql" { name } else { pipeline };
        let staged = staged_records(dir.path(), pipeline)
            .remove(resource)
            .unwrap_or_default();
        let ids: Vec<String> = staged
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["id"].to_string())
            .collect();
        assert_eq!(
            (ids.len(), distinct(&ids)),
            (records, records),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(api.requests().len() - before, requests, "{name}");
    }
    // Every example spec is checked, those run elsewhere (github_issues: incremental.rs,
    // jsonplaceholder_comments: foreach.rs) too.
    for entry in std::fs::read_dir(crate::support::root().join("examples/specs")).unwrap() {
        let path = entry.unwrap().path();
        Sluice::new(["validate", path.to_str().unwrap()]).run().success();
    }
}
