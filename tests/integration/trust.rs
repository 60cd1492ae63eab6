//! Trust: what an adversarial user, API or operator could do, against the real servers
//! (PostgreSQL cluster, replay API, a second API host on 127.0.0.2, raw TCP servers).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::api::{ApiServer, Fault};
use crate::support::{pg, Run, Sluice};

struct Env {
    api: ApiServer,
    db: String,
    staging: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            api: ApiServer::start(),
            db: pg::fresh_database(),
            staging: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn sluice<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Sluice {
        Sluice::new(args)
            .env("API_BASE", &self.api.base)
            .env("RICKANDMORTY_BASE_URL", format!("{}/api", self.api.base))
            .env("SLUICE_STAGING", self.staging.path())
            .env("DATABASE_URL", &self.db)
    }

    /// Write a spec file into the test's folder.
    fn spec(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn scalar(&self, sql: &str) -> Option<String> {
        pg::scalar(&self.db, sql)
    }

    fn count(&self, from: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {from}"))
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// A one-table spec reading `{"results": [{"id": …}, …]}` pages from `path`.
fn items_spec(source_extra: &str, path: &str, paginate: &str) -> String {
    format!(
        r#"version: 1
name: items
source:
  base_url: ${{API_BASE}}
  retry: {{max_attempts: 3, initial_backoff: 10ms, max_backoff: 50ms}}
{source_extra}
staging:
  location: ${{SLUICE_STAGING}}
warehouse:
  url: ${{DATABASE_URL}}
  schema: items
resources:
  - name: items
    path: "{path}"
    records: $.results[*]
    paginate: {paginate}
    table:
      name: item
      write: append
      columns:
        - {{name: id, type: integer, path: $.id}}
"#
    )
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every file below `root`, relative, sorted.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    out.sort();
    out
}

// 1. Credentials follow pagination only to the base URL's origin.
#[test]
fn credentials_never_leave_the_base_origin() {
    let env = Env::new();
    let other = ApiServer::start_on("127.0.0.2");
    let foreign = format!("{}/page?n=2", other.base);
    let host = other.base.trim_start_matches("http://").to_string();
    let auths = [
        ("bearer", "  auth: {type: bearer, token: \"${TOKEN}\"}"),
        (
            "api key header",
            "  auth: {type: api_key, name: X-Api-Key, value: \"${TOKEN}\", in: header}",
        ),
        (
            "api key query",
            "  auth: {type: api_key, name: api_key, value: \"${TOKEN}\", in: query}",
        ),
        ("basic", "  auth: {type: basic, username: me, password: \"${TOKEN}\"}"),
    ];
    let hops = [
        (
            "next link",
            format!("/page?n=1&next={}", encode(&foreign)),
            "{type: next_url, next: $.info.next}",
            2,
        ),
        (
            "Link header",
            format!("/page?n=1&link=1&next={}", encode(&foreign)),
            "{type: link_header}",
            2,
        ),
        (
            "redirect",
            format!("/redirect?to={}", encode(&foreign)),
            "{type: none}",
            1,
        ),
    ];
    let headers = "  headers: {X-Team: \"${TEAM}\"}";
    for (auth_name, auth) in auths {
        for (hop, path, paginate, page) in &hops {
            let spec = env.spec("items.yaml", &items_spec(&format!("{auth}\n{headers}"), path, paginate));
            let run = env
                .sluice(["extract", &spec])
                .env("TOKEN", "s3cret-token-value")
                .env("TEAM", "team-header-value")
                .run()
                .failure(1);
            assert!(
                run.stderr.contains(&format!("resource `items`, page {page}: "))
                    && run.stderr.contains(&format!("on host `{host}`"))
                    && run.stderr.contains("source.allowed_hosts"),
                "{auth_name} / {hop}: {}",
                run.stderr
            );
            assert!(!run.stderr.contains("s3cret-token-value"), "{}", run.stderr);
        }
    }
    assert!(
        other.requests().is_empty(),
        "the other host was called: {:?}",
        other.requests()
    );
    let first = &env.api.requests()[0];
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k == "x-team" && v == "team-header-value"),
        "the base origin gets the headers"
    );

    // Listed in allowed_hosts: followed, without credentials.
    for (auth_name, auth) in auths {
        for (hop, path, paginate, _) in &hops {
            let source = format!("{auth}\n{headers}\n  allowed_hosts: [\"127.0.0.2\"]");
            let spec = env.spec("items.yaml", &items_spec(&source, path, paginate));
            env.sluice(["extract", &spec])
                .env("TOKEN", "s3cret-token-value")
                .env("TEAM", "team-header-value")
                .run()
                .success();
            let seen = other.requests();
            let last = seen
                .last()
                .unwrap_or_else(|| panic!("{auth_name} / {hop}: not followed"));
            assert_eq!(last.target, "/page?n=2");
            assert!(
                !last
                    .headers
                    .iter()
                    .any(|(_, v)| v.contains("s3cret") || v.contains("team-header") || v.starts_with("Basic ")),
                "{auth_name} / {hop}: credentials went to the allowed host: {:?}",
                last.headers
            );
        }
    }
}

// 12. Retries: a body cut off mid-way is fetched again; a URL that can never work is not.
#[test]
fn bodies_cut_off_midway_are_retried_and_file_links_are_not() {
    for stall in [false, true] {
        let (base, connections) = flaky_server(stall);
        let env = Env::new();
        let spec = env.spec(
            "items.yaml",
            &items_spec("  timeout: 1s", "/flaky", "{type: none}").replace("${API_BASE}", &base),
        );
        let run = env.sluice(["extract", &spec]).run().success();
        assert!(
            run.stdout.contains("items                          1          2"),
            "{}",
            run.stdout
        );
        assert!(run.stderr.contains("retrying"), "{}", run.stderr);
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "stall {stall}: {}",
            run.stderr
        );
    }
    let env = Env::new();
    let spec = env.spec(
        "items.yaml",
        &items_spec(
            "",
            &format!("/page?n=1&next={}", encode("file:///etc/passwd")),
            "{type: next_url, next: $.info.next}",
        ),
    );
    let run = env.sluice(["extract", &spec]).run().failure(1);
    assert!(
        run.stderr
            .contains("resource `items`, page 2: file:///etc/passwd cannot be fetched: only http and https URLs can"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

/// A raw HTTP server whose first answer breaks off mid-body (closed, or stalled past the
/// client's timeout) and whose later answers are whole.
fn flaky_server(stall: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(5) {
            let Ok(mut stream) = stream else { continue };
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let body = br#"{"results": [{"id": 1}, {"id": 2}]}"#;
                if n == 0 {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body[..10]);
                    let _ = stream.flush();
                    if stall {
                        std::thread::sleep(std::time::Duration::from_secs(3));
                    }
                    return;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            });
        }
    });
    (base, count)
}

// 2. Every SQL literal is safe whatever the server's settings.
#[test]
fn descriptions_cannot_inject_sql_without_standard_conforming_strings() {
    let env = Env::new();
    let db = env.db.rsplit('/').next().unwrap().to_string();
    pg::execute(
        &env.db,
        &format!(
            "ALTER DATABASE {db} SET standard_conforming_strings = off; CREATE SCHEMA victim; CREATE TABLE victim.t (x int)"
        ),
    );
    env.api.put("one", r#"{"results": [{"id": 1}]}"#, &[]);
    let evil = r"\'; DROP TABLE victim.t; --";
    let spec = items_spec("", "/dyn/one", "{type: none}")
        .replace(
            "      write: append\n",
            "      write: append\n      description: '\\''; DROP TABLE victim.t; --'\n",
        )
        .replace("path: $.id}\n", "path: $.id, description: 'it''s \\\\ two'}\n");
    let spec = env.spec("items.yaml", &spec);
    env.sluice(["run", &spec]).run().success();
    assert_eq!(env.count("victim.t"), 0, "victim.t is still there");
    assert_eq!(
        env.scalar("SELECT obj_description('items.item'::regclass)").as_deref(),
        Some(evil)
    );
    assert_eq!(
        env.scalar("SELECT col_description('items.item'::regclass, 1)")
            .as_deref(),
        Some(r"it's \\ two")
    );
}

// 3. An sslmode is read as libpq reads it, or refused; never quietly downgraded.
#[test]
fn sslmode_is_never_downgraded() {
    let env = Env::new();
    if pg::tls_ca().is_none() {
        eprintln!("NOTE: TEST_DATABASE_URL is set, so there is no test certificate to refuse");
        return;
    }
    let url = url::Url::parse(&env.db).unwrap();
    let kv = |mode: &str| {
        format!(
            "host=localhost port={} user={} dbname={} {mode}",
            url.port().unwrap(),
            url.username(),
            url.path().trim_start_matches('/')
        )
    };
    let by_name = env.db.replace("127.0.0.1", "localhost");
    // verify-full against the system roots refuses the test CA's certificate; a spelling
    // that was read as `prefer` would have connected in plaintext.
    for conn in [
        kv("sslmode = verify-full"),
        kv("sslmode= 'verify-full'"),
        format!("{by_name}?ssl%6Dode=verify-full"),
        format!("{by_name}?sslmode=verify%2Dfull"),
    ] {
        let run = env
            .sluice(["run", "pipelines/rickandmorty.yaml", "--resource", "episode"])
            .env("DATABASE_URL", &conn)
            .run()
            .failure(1);
        assert!(
            run.stderr.to_lowercase().contains("certificate"),
            "{conn}: {}",
            run.stderr
        );
    }
    let run = env
        .sluice(["run", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .env("DATABASE_URL", kv("sslmode = requir"))
        .run()
        .failure(1);
    assert!(run.stderr.contains("unknown sslmode `requir`"), "{}", run.stderr);
    env.sluice(["run", "pipelines/rickandmorty.yaml", "--resource", "episode"])
        .env("DATABASE_URL", kv("sslmode = require"))
        .run()
        .success();
}

// 4. Staged objects are verified against the manifest while they are loaded.
#[test]
fn tampered_staging_is_refused_whole() {
    let env = Env::new();
    let staged = env.sluice(["extract", "pipelines/rickandmorty.yaml"]).run().success();
    let run_id = staged.run_id();
    let object = |resource: &str| -> PathBuf {
        let rel = files(env.staging.path())
            .into_iter()
            .find(|f| f.starts_with(&format!("rickandmorty/{resource}/")) && f.contains(&run_id))
            .unwrap();
        env.staging.path().join(rel)
    };
    let gunzip = |bytes: &[u8]| {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let gzip = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let character = object("character");
    let original = std::fs::read(&character).unwrap();
    // A re-compressed object with one name edited: same records, other bytes.
    let edited = gunzip(&original).replacen("Rick Sanchez", "Rick Sanchex", 1);
    std::fs::write(&character, gzip(&edited)).unwrap();
    let load = env
        .sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id])
        .run()
        .failure(1);
    let key = character.strip_prefix(env.staging.path()).unwrap().to_str().unwrap();
    assert!(
        load.stderr.contains(&format!("staged object `{key}`"))
            && load.stderr.contains("but the manifest says")
            && load.stderr.contains("changed after extraction"),
        "{}",
        load.stderr
    );
    assert_eq!(env.scalar("SELECT to_regclass('rickandmorty.character')::text"), None);
    assert_eq!(env.count("_sluice.runs WHERE status = 'failed'"), 1);

    // An appended gzip member: 127 records where the manifest says 126.
    std::fs::write(&character, &original).unwrap();
    let location = object("location");
    let mut grown = std::fs::read(&location).unwrap();
    grown.extend(gzip("{\"id\": 999, \"name\": \"Nowhere\"}\n"));
    std::fs::write(&location, grown).unwrap();
    let load = env
        .sluice(["load", "pipelines/rickandmorty.yaml", "--run", &run_id])
        .run()
        .failure(1);
    assert!(
        load.stderr.contains("staged object `rickandmorty/location/"),
        "{}",
        load.stderr
    );
    assert_eq!(env.count("_sluice.runs WHERE status = 'failed'"), 2);
    assert_eq!(env.scalar("SELECT to_regclass('rickandmorty.location')::text"), None);
}

/// A record whose JSON text is `depth` arrays deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

// 5. Hostile records are record errors under `on_error`, never a panic or a failed load.
#[test]
fn hostile_records_never_crash_and_every_record_is_accounted_for() {
    use rand::{RngExt, SeedableRng};
    let env = Env::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut records = Vec::new();
    let mut good = 0;
    for id in 1..=300 {
        let kind = if id <= 8 { id } else { rng.random_range(1..=8) };
        let (name, extra, ok) = match kind {
            1 => (r#""plain""#.to_string(), String::new(), true),
            2 => (r#""lone \ud800 surrogate""#.to_string(), String::new(), false),
            3 => (r#""nul \u0000 byte""#.to_string(), String::new(), false),
            4 => (r#""deep""#.to_string(), format!(", \"deep\": {}", nested(200)), false),
            5 => (
                r#""ancient""#.to_string(),
                ", \"at_ms\": -220000000000000".to_string(),
                false,
            ),
            6 => (
                r#""long""#.to_string(),
                format!(", \"amount\": \"0.{}\"", "7".repeat(17_000)),
                false,
            ),
            7 => (
                r#""\u0001 control \t and é ✓""#.to_string(),
                ", \"at_ms\": 1700000000000".to_string(),
                true,
            ),
            _ => (r#""not an id""#.to_string(), String::new(), false),
        };
        let id_text = if kind == 8 { "\"x\"".to_string() } else { id.to_string() };
        if ok {
            good += 1;
        }
        // Pretty-printed, as some APIs send them.
        records.push(format!(
            "  {{\n    \"id\": {id_text},\n    \"name\": {name}{extra}\n  }}"
        ));
    }
    let page = format!("{{\n  \"results\": [\n{}\n  ]\n}}\n", records.join(",\n"));
    env.api.put("hostile", page, &[]);
    let spec = items_spec("", "/dyn/hostile", "{type: none}")
        .replace("write: append\n", "write: append\n      on_error: quarantine\n")
        .replace(
            "path: $.id}\n",
            "path: $.id}\n        - {name: name, type: text, path: $.name}\n        - {name: deep, type: jsonb, path: $.deep, optional: true}\n        - {name: at, type: timestamptz, path: $.at_ms, transform: epoch_ms}\n        - {name: amount, type: numeric, path: $.amount, optional: true}\n",
        );
    let spec = env.spec("hostile.yaml", &spec);
    env.sluice(["extract", &spec, "--dry-run", "--limit", "300"])
        .run()
        .success();
    let dry = env
        .sluice(["run", &spec, "--dry-run", "--limit", "300"])
        .run()
        .success();
    assert_eq!(dry.stdout.lines().count(), good, "dry-run rows");
    let run = env.sluice(["run", &spec]).run().success();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let loaded = env.count("items.item");
    let quarantined = env.count("_sluice.rejects");
    assert_eq!(loaded as usize, good);
    assert_eq!(loaded + quarantined, 300, "loaded + quarantined = staged");
    let resources: Value = serde_json::from_str(
        &env.scalar("SELECT resources::text FROM _sluice.runs WHERE status = 'loaded'")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(resources[0]["records"], 300);
    assert_eq!(resources[0]["rows"], good);
    assert_eq!(resources[0]["rejected"], 300 - good);
    for (record, column, reason) in [
        ("2", "(record)", "not valid JSON"),
        ("3", "name", "NUL character"),
        ("4", "(record)", "recursion limit"),
        ("5", "at", "before 4713 BC"),
        ("6", "amount", "more digits than PostgreSQL numeric holds"),
        ("8", "id", "is not an integer"),
    ] {
        let row = pg::query(
            &env.db,
            &format!("SELECT column_name, reason, object_key FROM _sluice.rejects WHERE record_number = {record}"),
        );
        assert_eq!(row.len(), 1, "record {record}");
        assert_eq!(row[0][0].as_deref(), Some(column), "record {record}: {row:?}");
        assert!(
            row[0][1].as_deref().unwrap().contains(reason),
            "record {record}: {row:?}"
        );
        assert!(row[0][2].as_deref().unwrap().starts_with("items/items/"), "{row:?}");
    }
}

// 6. One response and one spec file have a size limit.
#[test]
fn a_gzip_bomb_and_a_huge_spec_are_refused() {
    let env = Env::new();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"{\"results\": [").unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..64 {
        e.write_all(&spaces).unwrap();
    }
    e.write_all(b"]}").unwrap();
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    env.api.put("bomb", bomb, &[("content-encoding", "gzip")]);
    let spec = env.spec(
        "bomb.yaml",
        &items_spec("  max_response_size: 8MiB", "/dyn/bomb", "{type: none}"),
    );
    let run = env.sluice(["extract", &spec]).run().failure(1);
    assert!(
        run.stderr.contains("resource `items`, page 1: the response from")
            && run.stderr.contains("is larger than max_response_size = 8388608 bytes"),
        "{}",
        run.stderr
    );
    let huge = env.spec("huge.yaml", &format!("version: 1\n#{}\n", "x".repeat(2 << 20)));
    let run = Sluice::new(["validate", &huge]).run().failure(1);
    assert!(
        run.stdout.contains("sluice reads specs of at most 1048576 bytes"),
        "{}",
        run.stdout
    );
}

// 7. Concurrent first runs on a fresh database do not collide: they take turns.
#[test]
fn concurrent_first_runs_do_not_collide() {
    for trial in 0..3 {
        let env = Env::new();
        let other = env.spec(
            "other.yaml",
            &std::fs::read_to_string(crate::support::root().join("pipelines/rickandmorty.yaml"))
                .unwrap()
                .replace("name: rickandmorty\n", "name: rickandmorty_copy\n"),
        );
        // Two runs of one pipeline, and two pipelines creating the same new schema.
        let specs = ["pipelines/rickandmorty.yaml".to_string(), other];
        let runs: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = [&specs[0], &specs[0], &specs[1]]
                .into_iter()
                .map(|spec| {
                    let cmd = env.sluice(["run", spec.as_str(), "--resource", "episode"]);
                    s.spawn(move || cmd.run())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Of the two runs of one pipeline, the one that started first may commit second:
        // then it is refused, as a run older than one loaded (its records may be older).
        let mut loaded: i64 = 0;
        for (i, run) in runs.into_iter().enumerate() {
            if i < 2 && run.code != 0 {
                assert!(
                    run.stderr.contains("would put older records over newer ones"),
                    "{}",
                    run.stderr
                );
                continue;
            }
            run.success();
            loaded += 1;
        }
        assert!(loaded >= 2, "trial {trial}");
        assert_eq!(
            env.count("_sluice.runs WHERE status = 'loaded'"),
            loaded,
            "trial {trial}"
        );
        assert_eq!(env.count("rickandmorty.episode"), 51);
    }
}

// 8. Values from the environment and passwords in URLs never show in messages.
#[test]
fn environment_values_and_url_passwords_are_masked() {
    let env = Env::new();
    let base = env.api.base.replace("http://", "http://someone:pw-hunter2@");
    let spec = items_spec("  params: {key: \"${PARAM_SECRET}\"}", "/nothing-here", "{type: none}")
        .replace("${API_BASE}", "${SECRET_BASE}")
        .replace(
            "    records:",
            "    params: {token: \"${RESOURCE_SECRET}\"}\n    records:",
        );
    let spec = env.spec("items.yaml", &spec);
    let run = env
        .sluice(["run", &spec])
        .env("SECRET_BASE", &base)
        .env("PARAM_SECRET", "param-secret-value")
        .env("RESOURCE_SECRET", "resource-secret-value")
        .run()
        .failure(1);
    assert!(run.stderr.contains("HTTP 404"), "{}", run.stderr);
    for secret in ["param-secret-value", "resource-secret-value", "pw-hunter2", "someone:"] {
        assert!(!run.stderr.contains(secret), "{secret} shown: {}", run.stderr);
    }
    let error = env.scalar("SELECT error FROM _sluice.runs").unwrap();
    assert!(
        !error.contains("param-secret-value") && !error.contains("pw-hunter2"),
        "{error}"
    );
}

// 9. A record is mapped into all its tables or rejected whole, and counted as such.
#[test]
fn a_rejected_nested_element_rejects_its_record_and_counts_stay_true() {
    let env = Env::new();
    env.api.put(
        "tags",
        r#"{"results": [{"id": 1, "tags": [1, 2]}, {"id": 2, "tags": [3, "bad"]}, {"id": 3, "tags": [4]}]}"#,
        &[],
    );
    let spec = items_spec("", "/dyn/tags", "{type: none}")
        .replace("write: append\n", "write: append\n      on_error: skip\n      primary_key: [id]\n")
        .replace(
            "path: $.id}\n",
            "path: $.id}\n      nested:\n        - name: tag\n          each: $.tags[*]\n          columns:\n            - {name: item_id, from_parent: id}\n            - {name: tag, type: integer, path: $}\n",
        );
    let spec = env.spec("tags.yaml", &spec);
    let run = env.sluice(["run", &spec]).run().success();
    let tag_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("items            tag"))
        .unwrap();
    let counts: Vec<&str> = tag_line.split_whitespace().collect();
    assert_eq!(
        &counts[2..6],
        ["3", "3", "3", "0"],
        "records rows inserted updated: {tag_line}"
    );
    assert_eq!(env.count("items.tag"), 3);
    assert_eq!(env.count("items.item"), 2);
    let resources: Value =
        serde_json::from_str(&env.scalar("SELECT resources::text FROM _sluice.runs").unwrap()).unwrap();
    assert_eq!(resources[1]["inserted"], 3);
    assert_eq!(resources[0]["rejected"], 1);
    let dry = env.sluice(["run", &spec, "--dry-run"]).run().success();
    assert_eq!(dry.stdout.lines().count(), 5, "2 items and 3 tags:\n{}", dry.stdout);
}

// 10. Specs: a byte order mark is fine; control characters cannot break a diagram.
#[test]
fn a_bom_is_accepted_and_control_characters_stay_out_of_diagrams() {
    let env = Env::new();
    let text = items_spec("", "/page", "{type: none}");
    let bom = env.spec("bom.yaml", &format!("\u{feff}{text}"));
    Sluice::new(["validate", &bom]).run().success();
    let spec = env.spec(
        "ctl.yaml",
        &text.replace(
            "name: items\nsource",
            "name: items\ndescription: \"bell \\x07 and \\x01 here\"\nsource",
        ),
    );
    for ext in ["drawio", "svg"] {
        let out = env.dir.path().join(format!("d.{ext}"));
        Sluice::new(["diagram", &spec, "-o", out.to_str().unwrap()])
            .run()
            .success();
        let xml = std::fs::read_to_string(&out).unwrap();
        roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{ext} is not XML: {e}"));
        assert!(xml.contains("bell ␇ and ␁ here"), "{ext}");
    }
}

// 11. Failed runs clean up after themselves; `gc` removes what killed ones left.
#[test]
fn failed_runs_leave_nothing_and_gc_removes_incomplete_runs() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    // What an ended process left behind (pid 0 never runs sluice).
    std::fs::create_dir(tmp.path().join("sluice-0-spill")).unwrap();
    let complete = env
        .sluice(["run", "pipelines/rickandmorty.yaml"])
        .env("TMPDIR", tmp.path())
        .run()
        .success();
    let complete_id = complete.run_id();
    assert_eq!(
        files(tmp.path()),
        Vec::<String>::new(),
        "spill files and orphans are gone"
    );
    let before = files(env.staging.path());
    std::fs::write(env.staging.path().join(".tmp/sluice-0-part"), b"x").unwrap();

    env.api.fault("/api/character?page=30", Fault::Html, 1);
    env.sluice(["run", "pipelines/rickandmorty.yaml"]).run().failure(1);
    assert_eq!(
        files(env.staging.path()),
        before,
        "the failed run removed what it staged"
    );

    env.api.fault("/api/character?page=30", Fault::Html, 1);
    env.sluice(["extract", "pipelines/rickandmorty.yaml", "--keep-failed"])
        .run()
        .failure(1);
    let kept: Vec<String> = files(env.staging.path())
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(kept.len() >= 2, "{kept:?}");
    let gc = env
        .sluice(["gc", "pipelines/rickandmorty.yaml", "--older-than", "0s"])
        .run()
        .success();
    assert!(
        gc.stdout
            .contains(&format!("removed {} objects of 1 incomplete run", kept.len())),
        "{}",
        gc.stdout
    );
    assert_eq!(files(env.staging.path()), before, "the complete run is untouched");
    assert!(before.iter().any(|f| f.contains(&complete_id)));
    env.sluice(["load", "pipelines/rickandmorty.yaml", "--latest", "--force"])
        .run()
        .success();
}
