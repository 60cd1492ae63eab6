//! `sluice extract` against the local API server, to a folder and to S3; the `Staging`
//! contract suite against both backends.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::api::{ApiServer, Fault};
use crate::support::s3::S3Server;
use crate::support::{fixture, Run, Sluice};

/// Every staged object below `root`, decompressed, by resource (the second key segment).
pub fn staged_records(root: &Path, pipeline: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut stack = vec![root.join(pipeline)];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".jsonl.gz") {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let rel = f.strip_prefix(root.join(pipeline)).unwrap();
        let resource = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&f).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        out.entry(resource).or_default().extend(text.lines().map(String::from));
    }
    out
}

/// The records of the recorded pages, byte for byte as the API sent them.
/// The appearance rows the fixture's characters give: one per character and episode.
pub fn fixture_appearances() -> i64 {
    fixture_records("character")
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r).unwrap()["episode"]
                .as_array()
                .unwrap()
                .len() as i64
        })
        .sum()
}

pub fn fixture_records(ep: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        results: Vec<&'a RawValue>,
    }
    let mut out = Vec::new();
    for n in 1.. {
        let Ok(text) = std::fs::read_to_string(fixture(&format!("api/rickandmorty/{ep}/page-{n}.json"))) else {
            break;
        };
        let page: Page = serde_json::from_str(&text).unwrap();
        out.extend(page.results.iter().map(|r| r.get().to_string()));
    }
    out
}

fn manifest_of(staging: &Path, pipeline: &str) -> Option<Value> {
    let dir = staging.join(pipeline).join("_manifests");
    let entry = std::fs::read_dir(dir).ok()?.flatten().next()?;
    Some(serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap())
}

fn extract(spec: &str, api: &ApiServer, staging: &Path) -> Run {
    Sluice::new(["extract", spec])
        .api(api)
        .env("SLUICE_STAGING", staging)
        .run()
}

#[test]
fn rick_and_morty_stages_every_record_byte_for_byte_with_a_manifest() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    let run = extract("pipelines/rickandmorty.yaml", &api, staging.path()).success();
    assert!(
        run.stdout.contains("character                     42        826"),
        "{}",
        run.stdout
    );
    let staged = staged_records(staging.path(), "rickandmorty");
    for ep in ["character", "location", "episode"] {
        let expected = fixture_records(ep);
        assert_eq!(staged[ep].len(), expected.len(), "{ep}");
        assert!(
            staged[ep] == expected,
            "{ep}: staged records differ from the API's bytes"
        );
    }
    assert_eq!(
        (
            staged["character"].len(),
            staged["location"].len(),
            staged["episode"].len()
        ),
        (826, 126, 51)
    );

    let m = manifest_of(staging.path(), "rickandmorty").expect("a manifest");
    let run_id = m["run_id"].as_str().unwrap();
    assert!(
        run.stdout.starts_with(&format!("run {run_id} staged to file://")),
        "{}",
        run.stdout
    );
    assert_eq!(m["pipeline"], "rickandmorty");
    assert_eq!(m["spec_hash"].as_str().unwrap().len(), 64);
    for r in m["resources"].as_array().unwrap() {
        for o in r["objects"].as_array().unwrap() {
            let key = o["key"].as_str().unwrap();
            // The key template lays objects out by date and run.
            assert!(
                key.starts_with(&format!("rickandmorty/{}/20", r["name"].as_str().unwrap())),
                "{key}"
            );
            assert!(key.ends_with(&format!("{run_id}-00000.jsonl.gz")), "{key}");
            let bytes = std::fs::read(staging.path().join(key)).unwrap();
            assert_eq!(o["bytes"].as_u64().unwrap(), bytes.len() as u64);
            assert_eq!(o["sha256"].as_str().unwrap(), hex::encode(Sha256::digest(&bytes)));
        }
    }
    let pages: Vec<u64> = m["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pages"].as_u64().unwrap())
        .collect();
    assert_eq!(pages, [7, 3, 42]);
    // Every request carried the sluice user agent.
    assert!(api
        .requests()
        .iter()
        .all(|r| r.user_agent.as_deref().is_some_and(|u| u.starts_with("sluice/"))));
}

#[test]
fn the_rate_limit_spaces_requests() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(fixture("specs/faults.yaml")).unwrap().replace(
        "  timeout: 1s\n",
        "  timeout: 1s\n  rate_limit: {requests_per_second: 20}\n",
    );
    let path = dir.path().join("limited.yaml");
    std::fs::write(&path, spec).unwrap();
    let started = std::time::Instant::now();
    extract(path.to_str().unwrap(), &api, staging.path()).success();
    // 42 requests at 20 per second take at least 41/20 s.
    assert!(
        started.elapsed() >= Duration::from_millis(2050),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_second_run_never_overwrites_the_first() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    extract("tests/fixtures/specs/faults.yaml", &api, staging.path()).success();
    extract("tests/fixtures/specs/faults.yaml", &api, staging.path()).success();
    let manifests = std::fs::read_dir(staging.path().join("faults/_manifests"))
        .unwrap()
        .count();
    assert_eq!(manifests, 2);
    assert_eq!(staged_records(staging.path(), "faults")["character"].len(), 2 * 826);
}

#[test]
fn every_pagination_style_reads_all_826_characters() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    extract("tests/fixtures/specs/styles.yaml", &api, staging.path()).success();
    let staged = staged_records(staging.path(), "styles");
    let expected = fixture_records("character");
    for style in [
        "next_url",
        "page_total",
        "page_empty",
        "offset_total",
        "offset_short",
        "cursor",
        "link",
    ] {
        let ids: Vec<String> = staged[style].clone();
        assert_eq!(ids.len(), 826, "{style}");
        // Order is kept even where pages were fetched concurrently.
        assert!(ids == expected, "{style}: records out of order or changed");
    }
    // Page-number with a total fetched exactly 42 pages; empty-page stop needed one more.
    let reqs = api.requests();
    let count = |prefix: &str| reqs.iter().filter(|r| r.target.starts_with(prefix)).count();
    assert_eq!(count("/empty/character"), 43);
    assert_eq!(count("/link/character"), 42);
    assert_eq!(count("/cursor/character"), 42);
    assert_eq!(count("/offset/character"), 9 + 9);
}

#[test]
fn coincap_sends_the_bearer_token_pages_by_offset_and_keeps_nulls() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    let run = extract("pipelines/coincap.yaml", &api, staging.path()).success();
    assert!(!run.stdout.contains("test-coincap-key-123") && !run.stderr.contains("test-coincap-key-123"));
    let staged = staged_records(staging.path(), "coincap");
    let records: Vec<Value> = staged["exchanges"]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 73);
    let okex = records.iter().find(|r| r["exchangeId"] == "okex").unwrap();
    assert!(okex["volumeUsd"].is_null() && okex["socket"].is_null());
    assert_eq!(
        records[0]["percentTotalVolume"].to_string(),
        "\"43.140867627459137071000000000000000000\""
    );
    let reqs = api.requests();
    assert_eq!(reqs[0].target, "/v3/exchanges?limit=100&offset=0");
    assert!(reqs
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer test-coincap-key-123")));
    // 73 of the 100 asked for: a server that caps its pages looks the same, so the next
    // offset is what was read, and its empty page ends the resource.
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].target, "/v3/exchanges?limit=100&offset=73");
}

#[test]
fn retryable_faults_recover() {
    let api = ApiServer::start();
    api.fault(
        "/api/character?page=3",
        Fault::TooManyRequests {
            retry_after: "1".into(),
        },
        1,
    );
    api.fault("/api/character?page=5", Fault::Status(500), 2);
    api.fault("/api/character?page=6", Fault::Status(503), 1);
    api.fault("/api/character?page=7", Fault::Stall(Duration::from_millis(1500)), 1);
    let staging = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = extract("tests/fixtures/specs/faults.yaml", &api, staging.path()).success();
    // Retry-After: 1 was honoured (the backoff alone would be milliseconds).
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
    assert_eq!(staged_records(staging.path(), "faults")["character"].len(), 826);
    let page5 = api
        .requests()
        .iter()
        .filter(|r| r.target == "/api/character?page=5")
        .count();
    assert_eq!(page5, 3);
}

fn assert_fails_cleanly(fault: Fault, times: usize, expected: &[&str]) {
    assert_fails_on_page(fault, times, 4, expected)
}

fn assert_fails_on_page(fault: Fault, times: usize, page: u32, expected: &[&str]) {
    let api = ApiServer::start();
    api.fault("/api/character?page=4", fault, times);
    let staging = tempfile::tempdir().unwrap();
    let run = extract("tests/fixtures/specs/faults.yaml", &api, staging.path()).failure(1);
    for e in expected {
        assert!(run.stderr.contains(e), "missing `{e}` in:\n{}", run.stderr);
    }
    assert!(
        run.stderr.contains(&format!("resource `character`, page {page}:")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 of 1 resources failed: `character`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        manifest_of(staging.path(), "faults").is_none(),
        "a failed run must have no manifest"
    );
}

#[test]
fn an_html_error_page_is_a_clear_error() {
    assert_fails_cleanly(Fault::Html, 1, &["is not JSON", "502 Bad Gateway"]);
}

#[test]
fn a_truncated_body_is_a_clear_error() {
    assert_fails_cleanly(Fault::Truncated, 1, &["is not JSON", "EOF while parsing"]);
}

#[test]
fn a_404_is_not_retried() {
    assert_fails_cleanly(Fault::Status(404), 1, &["HTTP 404", "injected 404"]);
}

#[test]
fn persistent_server_errors_give_up_after_max_attempts() {
    assert_fails_cleanly(Fault::Status(502), 10, &["HTTP 502", "after 4 attempts"]);
}

#[test]
fn a_stall_longer_than_the_timeout_fails_after_retries() {
    assert_fails_cleanly(
        Fault::Stall(Duration::from_secs(3)),
        10,
        &["after 4 attempts", "timed out"],
    );
}

#[test]
fn a_next_link_to_the_same_page_is_an_error_not_a_loop() {
    // Page 4 names itself as next: the fifth request would repeat it.
    assert_fails_on_page(Fault::NextSelf, 1, 5, &["points back to", "/api/character?page=4"]);
}

#[test]
fn a_records_path_that_matches_nothing_names_the_keys_it_saw() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(fixture("specs/faults.yaml"))
        .unwrap()
        .replace("$.results[*]", "$.data[*]");
    let path = dir.path().join("wrong.yaml");
    std::fs::write(&path, spec).unwrap();
    let run = extract(path.to_str().unwrap(), &api, staging.path()).failure(1);
    assert!(
        run.stderr
            .contains("resource `character`, page 1: `records: $.data[*]` matches nothing")
            && run.stderr.contains("`info`, `results`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_environment_variable_is_named() {
    let run = Sluice::new(["extract", "pipelines/coincap.yaml"])
        .env("SLUICE_STAGING", "/tmp/unused")
        .run()
        .failure(1);
    assert!(run.stderr.contains("COINCAP_TOKEN"), "{}", run.stderr);
}

#[test]
fn dry_run_prints_records_and_writes_nothing() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    let run = Sluice::new([
        "extract",
        "pipelines/rickandmorty.yaml",
        "--dry-run",
        "--resource",
        "character",
        "--limit",
        "25",
    ])
    .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
    .env("SLUICE_STAGING", staging.path())
    .run()
    .success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 25);
    assert!(lines[0].starts_with("{\"id\":1,\"name\":\"Rick Sanchez\""));
    assert_eq!(
        std::fs::read_dir(staging.path()).unwrap().count(),
        0,
        "a dry run writes nothing"
    );
    // Default: one page.
    let run = Sluice::new([
        "extract",
        "pipelines/rickandmorty.yaml",
        "--dry-run",
        "--resource",
        "episode",
    ])
    .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
    .env("SLUICE_STAGING", staging.path())
    .run()
    .success();
    assert_eq!(run.stdout.lines().count(), 20);
    let unknown = Sluice::new(["extract", "pipelines/rickandmorty.yaml", "--resource", "nope"])
        .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
        .env("SLUICE_STAGING", staging.path())
        .run()
        .failure(1);
    assert!(unknown.stderr.contains("unknown resource `nope`"), "{}", unknown.stderr);
}

#[test]
fn extract_to_s3_stages_the_same_records() {
    let api = ApiServer::start();
    let s3 = S3Server::start();
    let bucket = s3.bucket("lake");
    let run = Sluice::new(["extract", "pipelines/rickandmorty.yaml"])
        .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
        .env("SLUICE_STAGING", "s3://lake/raw/sluice")
        .envs(s3.env())
        .run()
        .success();
    assert!(run.stdout.contains("staged to s3://lake/raw/sluice"), "{}", run.stdout);
    let staged = staged_records(&bucket.join("raw/sluice"), "rickandmorty");
    assert!(staged["character"] == fixture_records("character"));
    assert_eq!((staged["location"].len(), staged["episode"].len()), (126, 51));
    let manifests: Vec<_> = std::fs::read_dir(bucket.join("raw/sluice/rickandmorty/_manifests"))
        .unwrap()
        .collect();
    assert_eq!(manifests.len(), 1);
}

#[test]
fn wrong_s3_credentials_fail_with_a_clear_error() {
    let api = ApiServer::start();
    let s3 = S3Server::start();
    s3.bucket("lake");
    let mut env = s3.env();
    env[1].1 = "wrong-secret-value".into();
    let run = Sluice::new(["extract", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
        .env("SLUICE_STAGING", "s3://lake/raw")
        .envs(env)
        .run()
        .failure(1);
    assert!(
        run.stderr.contains("preflight check of the staging failed, so nothing was read from the API: S3 list of `s3://lake/raw/rickandmorty/` failed: the AWS secret key does not match"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-secret-value"));
}

mod staging_contract {
    //! One suite, two backends: what every `Staging` promises.

    use sluice::stage::local::LocalStaging;
    use sluice::stage::s3::S3Staging;
    use sluice::stage::{Backend, StageError};

    use crate::support::s3::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn contract(store: &impl Backend) {
        // Round trip of bytes.
        store.put_bytes("p/r/a.json", b"{\"a\":1}".to_vec()).await.unwrap();
        assert_eq!(store.get_bytes("p/r/a.json").await.unwrap(), b"{\"a\":1}");
        // A missing key is NotFound, naming the key.
        match store.get_bytes("p/r/missing.json").await {
            Err(StageError::NotFound { key }) => assert_eq!(key, "p/r/missing.json"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(
            store.open("p/r/missing.json").await,
            Err(StageError::NotFound { .. })
        ));
        // A large file (over the multipart threshold) survives intact.
        let big: Vec<u8> = (0..40u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &big).unwrap();
        store.put_file("p/r/big.bin", tmp.path()).await.unwrap();
        let local = store.open("p/r/big.bin").await.unwrap();
        assert!(
            std::fs::read(&local.path).unwrap() == big,
            "large object changed in transit"
        );
        // Listing is by prefix and sorted.
        store.put_bytes("p/s/b.json", b"2".to_vec()).await.unwrap();
        store.put_bytes("q/c.json", b"3".to_vec()).await.unwrap();
        assert_eq!(
            store.list("p/").await.unwrap(),
            ["p/r/a.json", "p/r/big.bin", "p/s/b.json"]
        );
        assert_eq!(store.list("p/r/a").await.unwrap(), ["p/r/a.json"]);
        assert!(store.list("nothing/").await.unwrap().is_empty());
    }

    #[test]
    fn local_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStaging::new(dir.path()).unwrap();
        rt().block_on(contract(&store));
        // Local puts never replace an existing object and leave no temporary files.
        let again = rt().block_on(store.put_bytes("p/r/a.json", b"other".to_vec()));
        assert!(again.is_err());
        assert_eq!(std::fs::read(dir.path().join("p/r/a.json")).unwrap(), b"{\"a\":1}");
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        assert!(rt().block_on(store.get_bytes("../etc/passwd")).is_err());
    }

    #[test]
    fn s3_compatible_server() {
        let server = S3Server::start();
        let bucket = server.bucket("contract");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "test",
            ))
            .endpoint_url(&server.endpoint)
            .force_path_style(true)
            .build();
        let store = S3Staging::from_client(aws_sdk_s3::Client::from_conf(conf), "contract", "pre/fix").unwrap();
        rt().block_on(contract(&store));
        // Keys live below the prefix.
        assert!(bucket.join("pre/fix/p/r/a.json").is_file());
    }
}

#[test]
fn large_resources_are_split_into_parts_and_logs_can_be_json() {
    let api = ApiServer::start();
    let staging = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(fixture("specs/faults.yaml")).unwrap().replace(
        "  location: ${SLUICE_STAGING}\n",
        "  location: ${SLUICE_STAGING}\n  part_size: 64KiB\n",
    );
    let path = dir.path().join("parts.yaml");
    std::fs::write(&path, spec).unwrap();
    let run = Sluice::new(["extract", path.to_str().unwrap(), "--log-format", "json"])
        .env("API_BASE", &api.base)
        .env("SLUICE_STAGING", staging.path())
        .run()
        .success();
    for line in run.stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }
    let m = manifest_of(staging.path(), "faults").unwrap();
    let objects = m["resources"][0]["objects"].as_array().unwrap();
    assert!(
        objects.len() >= 5,
        "826 characters (~500 KB) in 64 KiB parts: {} objects",
        objects.len()
    );
    for (i, o) in objects.iter().enumerate() {
        assert!(
            o["key"].as_str().unwrap().ends_with(&format!("-{i:05}.jsonl.gz")),
            "{o}"
        );
    }
    assert_eq!(objects.iter().map(|o| o["records"].as_u64().unwrap()).sum::<u64>(), 826);
    assert!(
        staged_records(staging.path(), "faults")["character"] == fixture_records("character"),
        "parts keep order"
    );
}
