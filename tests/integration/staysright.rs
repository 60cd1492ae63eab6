//! Data that stays right: `gc` deletes only its own pipeline's incomplete runs (never a
//! running one, never through a link), a manifest loads only into its own pipeline, an
//! older run never loads over newer rows, `--limit` never destroys, and bad numbers are
//! errors. Local staging, SQLite warehouses, the replay API's `/dyn/` pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::api::{ApiServer, Fault};
use crate::support::{Run, Sluice};

struct Env {
    api: ApiServer,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            api: ApiServer::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn staging(&self) -> PathBuf {
        self.dir.path().join("staging")
    }

    /// A spec of pipeline `name` with one resource `items` read from `/dyn/{page}`, its
    /// table `item` written with `write`, staged in the shared folder under `key`.
    fn spec(&self, name: &str, page: &str, write: &str, key: &str) -> String {
        let pk = if write == "append" {
            ""
        } else {
            "\n      primary_key: [id]"
        };
        let text = format!(
            r#"version: 1
name: {name}
source:
  base_url: {base}
staging:
  location: {staging}
  key: "{key}"
  part_size: 1KiB
warehouse:
  url: sqlite://{db}
  schema: main
resources:
  - name: items
    path: /dyn/{page}
    records: $.results[*]
    paginate: {{type: next_url, next: $.next}}
    table:
      name: item
      write: {write}{pk}
      columns:
        - {{name: id, type: integer, path: $.id}}
        - {{name: v, type: text, path: $.v}}
"#,
            base = self.api.base,
            staging = self.staging().display(),
            db = self.db(name).display(),
        );
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// Serve `records` at `/dyn/{name}`, then `next` (a page name) when given.
    fn page(&self, name: &str, records: Value, next: Option<&str>) {
        let next = next.map(|n| format!("{}/dyn/{n}", self.api.base));
        self.api
            .put(name, json!({"results": records, "next": next}).to_string(), &[]);
    }

    fn sluice<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Sluice {
        Sluice::new(args).dir(self.dir.path())
    }

    fn rows(&self, name: &str, sql: &str) -> Vec<(i64, String)> {
        let c = rusqlite::Connection::open(self.db(name)).unwrap();
        let mut stmt = c.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }
}

/// Records `1..=n` with value `v`, long enough to fill several 1 KiB parts.
fn records(n: u64, v: &str) -> Value {
    (1..=n)
        .map(|i| json!({"id": i, "v": format!("{v}-{i}-{}", "x".repeat((i % 7) as usize))}))
        .collect()
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

const DEFAULT: &str = "{pipeline}/{resource}/{run_time:%Y/%m/%d/%H/%M}/{run_id}-{part}.jsonl.gz";

#[test]
fn gc_deletes_only_its_own_pipelines_incomplete_runs() {
    let env = Env::new();
    env.page("p", records(300, "a"), None);
    // `shop` and `shop-eu` keyed `{pipeline}-{resource}` in one folder: `shop`'s template
    // would once match `shop-eu-items/…` as resource `eu-items`.
    let key = "{pipeline}-{resource}/{run_id}-{part}.jsonl.gz";
    let shop = env.spec("shop", "p", "append", key);
    let eu = env.spec("shop-eu", "p", "append", key);
    env.sluice(["extract", &eu]).run().success();
    let before = files(&env.staging());
    assert!(
        before.iter().filter(|f| f.starts_with("shop-eu-items/")).count() > 1,
        "{before:?}"
    );
    // A complete run of `shop` too, and an incomplete one (its manifest removed).
    env.sluice(["extract", &shop]).run().success();
    let incomplete = env.sluice(["extract", &shop]).run().success().run_id();
    std::fs::remove_file(env.staging().join(format!("shop/_manifests/{incomplete}.json"))).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let gc = env.sluice(["gc", &shop, "--older-than", "0s"]).run().success();
    assert!(
        gc.stdout.contains(&format!("removed incomplete run {incomplete}")),
        "{}",
        gc.stdout
    );
    let after = files(&env.staging());
    // Every object of `shop-eu` is still there, and its run loads.
    for f in before.iter().filter(|f| f.starts_with("shop-eu")) {
        assert!(after.contains(f), "gc of `shop` removed `{f}` of `shop-eu`");
    }
    assert!(!after.iter().any(|f| f.contains(&incomplete)), "{after:?}");
    env.sluice(["load", &eu]).run().success();
    assert_eq!(env.rows("shop-eu", "SELECT count(*), '' FROM item")[0].0, 300);
}

#[test]
fn specs_that_share_keys_or_nest_are_refused_together() {
    let env = Env::new();
    // Without `{pipeline}`, a template is refused on its own.
    let bare = env.spec("bare", "p", "append", "{resource}/{run_id}-{part}.jsonl.gz");
    let v = env.sluice(["validate", &bare]).run().failure(1);
    assert!(v.stdout.contains("must contain `{pipeline}`"), "{}", v.stdout);
    // Two specs whose keys collide: pipeline `a_b` resource `items` and pipeline `a`
    // resource `b_items` both make `a_b_items/…`.
    let a = env.spec("a", "p", "append", "{pipeline}_{resource}/{run_id}-{part}.jsonl.gz");
    let text = std::fs::read_to_string(&a)
        .unwrap()
        .replace("- name: items", "- name: b_items");
    std::fs::write(&a, text).unwrap();
    let ab = env.spec("a_b", "p", "append", "{pipeline}_{resource}/{run_id}-{part}.jsonl.gz");
    env.sluice(["validate", &a]).run().success();
    env.sluice(["validate", &ab]).run().success();
    let both = env.sluice(["validate", &a, &ab]).run().failure(1);
    assert!(both.stdout.contains("is also a key of"), "{}", both.stdout);
    // Nested locations.
    let outer = env.spec("outer", "p", "append", DEFAULT);
    let inner = env.spec("inner", "p", "append", DEFAULT);
    let nested = format!("{}/inner", env.staging().display());
    let text = std::fs::read_to_string(&inner).unwrap().replace(
        &format!("location: {}\n", env.staging().display()),
        &format!("location: {nested}\n"),
    );
    std::fs::write(&inner, text).unwrap();
    let v = env.sluice(["validate", &outer, &inner]).run().failure(1);
    assert!(v.stdout.contains("nest"), "{}", v.stdout);
    // Apart, they pass together.
    let other = env.spec("other", "p", "append", DEFAULT);
    env.sluice(["validate", &outer, &other]).run().success();
}

#[test]
fn gc_and_load_never_follow_a_symlink() {
    let env = Env::new();
    env.page("p", records(50, "a"), None);
    let spec = env.spec("links", "p", "append", DEFAULT);
    env.sluice(["extract", &spec]).run().success();
    // A file outside staging, reached through a link that looks like an incomplete run's
    // folder; and a loop of two links.
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let precious = outside.join("20200101T000000Z-abcdef-00000.jsonl.gz");
    std::fs::write(&precious, "keep me").unwrap();
    let minute = env.staging().join("links/items/2020/01/01/00");
    std::fs::create_dir_all(&minute).unwrap();
    std::os::unix::fs::symlink(&outside, minute.join("00")).unwrap();
    std::os::unix::fs::symlink(env.staging().join("links/loop2"), env.staging().join("links/loop1")).unwrap();
    std::os::unix::fs::symlink(env.staging().join("links/loop1"), env.staging().join("links/loop2")).unwrap();
    let gc = env.sluice(["gc", &spec, "--older-than", "1d"]).run().success();
    assert!(gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    // An unknown run: the walk ends, the answer names the run.
    let load = env
        .sluice(["load", &spec, "--run", "20200101T000000Z-abcdef"])
        .run()
        .failure(1);
    assert!(load.stderr.contains("there is no staged run"), "{}", load.stderr);
}

#[test]
fn gc_leaves_a_running_extraction_alone_and_an_extraction_checks_its_parts() {
    let env = Env::new();
    env.page("p1", records(400, "a"), Some("p2"));
    env.page("p2", records(1, "b"), None);
    env.api.fault("/dyn/p2", Fault::Stall(Duration::from_secs(4)), 1);
    let spec = env.spec("slow", "p1", "append", DEFAULT);
    let logs = tempfile::tempdir().unwrap();
    let bg = env.sluice(["extract", &spec]).spawn(logs.path());
    // Parts of page 1 are staged while page 2 stalls; the run started over a second ago.
    std::thread::sleep(Duration::from_millis(2000));
    let staged = files(&env.staging().join("slow/items"));
    assert!(!staged.is_empty(), "nothing staged yet: {}", bg.stderr());
    let gc = env.sluice(["gc", &spec, "--older-than", "0s"]).run().success();
    assert!(gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    assert!(gc.stdout.contains("still running"), "{}", gc.stdout);
    let mut bg = bg;
    let status = wait(&mut bg);
    assert_eq!(status, 0, "{}", bg.stderr());
    env.sluice(["load", &spec]).run().success();
    assert_eq!(env.rows("slow", "SELECT count(*), '' FROM item")[0].0, 401);
    // No marker is left behind.
    assert!(files(&env.staging()).iter().all(|f| !f.contains("_running")));

    // A part removed under a running extraction: it fails, and writes no manifest.
    env.api.fault("/dyn/p2", Fault::Stall(Duration::from_secs(3)), 1);
    let mut bg = env.sluice(["extract", &spec]).spawn(logs.path());
    std::thread::sleep(Duration::from_millis(1500));
    let first = files(&env.staging().join("slow/_manifests"))
        .remove(0)
        .replace(".json", "");
    let part = files(&env.staging().join("slow/items"))
        .into_iter()
        .find(|f| !f.contains(&first))
        .expect("a part of the second run");
    std::fs::remove_file(env.staging().join("slow/items").join(&part)).unwrap();
    assert_eq!(wait(&mut bg), 1, "{}", bg.stderr());
    assert!(
        bg.stderr().contains("removed or changed while the run was extracted"),
        "{}",
        bg.stderr()
    );
    assert_eq!(files(&env.staging().join("slow/_manifests")).len(), 1);
}

fn wait(bg: &mut crate::support::Background) -> i32 {
    bg.wait().code().unwrap_or(-1)
}

#[test]
fn a_manifest_loads_only_into_its_own_pipeline() {
    let env = Env::new();
    env.page("p", records(20, "theirs"), None);
    let other = env.spec("other", "p", "append", DEFAULT);
    let ours = env.spec("ours", "p", "append", DEFAULT);
    let run = env.sluice(["extract", &other]).run().success().run_id();
    // `other`'s manifest under `ours`' manifests: refused by name.
    let manifests = env.staging().join("ours/_manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let theirs = std::fs::read_to_string(env.staging().join(format!("other/_manifests/{run}.json"))).unwrap();
    std::fs::write(manifests.join(format!("{run}.json")), &theirs).unwrap();
    let load = env.sluice(["load", &ours, "--run", &run]).run().failure(1);
    assert!(
        load.stderr.contains("is a manifest of pipeline `other`"),
        "{}",
        load.stderr
    );
    // Renamed to `ours`, its objects still lie under `other/`: refused too.
    let renamed = theirs.replace("\"pipeline\": \"other\"", "\"pipeline\": \"ours\"");
    std::fs::write(manifests.join(format!("{run}.json")), renamed).unwrap();
    let load = env.sluice(["load", &ours, "--run", &run]).run().failure(1);
    assert!(
        load.stderr.contains("is not a key of this pipeline's run"),
        "{}",
        load.stderr
    );
    assert!(
        !env.db("ours").exists()
            || env.rows("ours", "SELECT count(*), '' FROM sqlite_master WHERE name = 'item'")[0].0 == 0
    );
}

#[test]
fn an_older_run_never_loads_over_a_newer_one() {
    let env = Env::new();
    env.page("p", records(5, "old"), None);
    let spec = env.spec("order", "p", "merge", DEFAULT);
    let older = env.sluice(["extract", &spec]).run().success().run_id();
    std::thread::sleep(Duration::from_millis(20));
    env.page("p", records(5, "new"), None);
    env.sluice(["run", &spec]).run().success();
    let load = env.sluice(["load", &spec, "--run", &older]).run().failure(1);
    assert!(
        load.stderr.contains("would put older records over newer ones") && load.stderr.contains("--force"),
        "{}",
        load.stderr
    );
    let rows = env.rows("order", "SELECT id, v FROM item ORDER BY id");
    assert!(rows.iter().all(|(_, v)| v.starts_with("new-")), "{rows:?}");
    // Asked for, it loads.
    env.sluice(["load", &spec, "--run", &older, "--force"]).run().success();
    let rows = env.rows("order", "SELECT id, v FROM item ORDER BY id");
    assert!(rows.iter().all(|(_, v)| v.starts_with("old-")), "{rows:?}");
    // An append table takes any run.
    let log = env.spec("log", "p", "append", DEFAULT);
    let first = env.sluice(["extract", &log]).run().success().run_id();
    env.sluice(["run", &log]).run().success();
    env.sluice(["load", &log, "--run", &first]).run().success();
    assert_eq!(env.rows("log", "SELECT count(*), '' FROM item")[0].0, 10);
}

#[test]
fn a_limited_run_replaces_nothing_and_says_so() {
    let env = Env::new();
    env.page("p", records(40, "a"), None);
    let spec = env.spec("lim", "p", "replace", DEFAULT);
    env.sluice(["run", &spec]).run().success();
    let limited = env.sluice(["run", &spec, "--limit", "5"]).run().success();
    assert!(limited.stdout.contains("limited by --limit"), "{}", limited.stdout);
    assert!(limited.stdout.contains("`write: replace`"), "{}", limited.stdout);
    assert_eq!(env.rows("lim", "SELECT count(*), '' FROM item")[0].0, 40);
    let status = env.rows(
        "lim",
        "SELECT count(*), status FROM _sluice_runs GROUP BY status ORDER BY status",
    );
    assert_eq!(status, vec![(1, "limited".to_string()), (1, "loaded".to_string())]);
    let manifests = files(&env.staging().join("lim/_manifests"));
    let marked = manifests
        .iter()
        .filter(|m| {
            std::fs::read_to_string(env.staging().join("lim/_manifests").join(m))
                .unwrap()
                .contains("\"limited\": true")
        })
        .count();
    assert_eq!(marked, 1);
}

#[test]
fn bad_numbers_are_errors_not_panics_or_wraps() {
    let env = Env::new();
    let spec = env.spec("nums", "p", "append", DEFAULT);
    let gc = env.sluice(["gc", &spec, "--older-than", "9999999999d"]).run();
    assert_eq!(gc.code, 2, "{gc:?}");
    let gc = env.sluice(["gc", &spec, "--older-than", "1w"]).run().success();
    assert!(gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("  base_url:", "  timeout: 5124095576030432h\n  base_url:");
    std::fs::write(&spec, text).unwrap();
    let v: Run = env.sluice(["validate", &spec]).run().failure(1);
    assert!(v.stdout.contains("too long"), "{}", v.stdout);
}

#[test]
fn an_interrupted_run_commits_nothing_checkpoints_and_goes_on_with_resume() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let env = Env::new();
        env.page("p1", records(400, "a"), Some("p2"));
        env.page("p2", records(1, "b"), None);
        let spec = env.spec("stop", "p1", "append", DEFAULT);
        let logs = tempfile::tempdir().unwrap();
        env.api.fault("/dyn/p2", Fault::Stall(Duration::from_secs(5)), 1);
        let mut bg = env.sluice(["run", &spec]).spawn(logs.path());
        std::thread::sleep(Duration::from_millis(2000));
        assert!(!files(&env.staging().join("stop/items")).is_empty(), "{}", bg.stderr());
        bg.signal(signal);
        assert_eq!(wait(&mut bg), code, "{}", bg.stderr());
        let said = bg.stderr();
        assert!(
            said.contains(&format!("stopped by SIG{signal} at a page boundary: run `"))
                && said.contains("is checkpointed, 400 records staged"),
            "{said}"
        );
        let c = rusqlite::Connection::open(env.db("stop")).unwrap();
        let tables: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'item'", [], |r| {
                r.get(0)
            })
            .unwrap();
        if tables > 0 {
            let n: i64 = c.query_row("SELECT count(*) FROM item", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 0, "nothing was committed");
        }
        assert!(files(&env.staging().join("stop/_manifests")).is_empty());
        // It goes on from the checkpoint: the second page only, then the load.
        let before = env.api.requests().len();
        let resumed = env.sluice(["run", &spec, "--resume"]).run().success();
        let asked: Vec<String> = env.api.requests()[before..].iter().map(|r| r.target.clone()).collect();
        assert_eq!(asked, vec!["/dyn/p2".to_string()], "{}", resumed.stderr);
        let n: i64 = c.query_row("SELECT count(*) FROM item", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 401, "{}", resumed.stderr);
        assert!(files(&env.staging().join("stop/_checkpoints")).is_empty());
    }
}

/// `gc` judges a checkpointed run by its newest save, not by when it started: saved
/// within `--older-than`, its parts and checkpoint stay (and `--resume` goes on);
/// saved before, both go.
#[test]
fn gc_keeps_a_checkpointed_run_by_its_newest_save_and_removes_an_old_ones_checkpoint() {
    let env = Env::new();
    env.page("p1", records(400, "a"), Some("p2"));
    env.page("p2", records(1, "b"), None);
    let spec = env.spec("kept", "p1", "append", DEFAULT);
    let logs = tempfile::tempdir().unwrap();
    let interrupt = || {
        env.api.fault("/dyn/p2", Fault::Stall(Duration::from_secs(5)), 1);
        let mut bg = env.sluice(["extract", &spec]).spawn(logs.path());
        std::thread::sleep(Duration::from_millis(2000));
        bg.signal("TERM");
        assert_eq!(wait(&mut bg), 143, "{}", bg.stderr());
    };
    let checkpoints = env.staging().join("kept/_checkpoints");
    // Every save of the checkpoint, its `saved_at` set to `at`.
    let saved_at = |at: &str| {
        for run in std::fs::read_dir(&checkpoints).unwrap() {
            for save in std::fs::read_dir(run.unwrap().path()).unwrap() {
                let path = save.unwrap().path();
                let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                c["saved_at"] = json!(at);
                std::fs::remove_file(&path).unwrap();
                std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
            }
        }
    };
    interrupt();
    let parts = files(&env.staging().join("kept/items"));
    assert!(!parts.is_empty());
    // Saved "just now" (ahead of the cutoff): kept even at `--older-than 0s`.
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    saved_at(&ahead);
    let gc = env.sluice(["gc", &spec, "--older-than", "0s"]).run().success();
    assert!(gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    assert_eq!(files(&env.staging().join("kept/items")), parts);
    assert_eq!(files(&checkpoints).len(), 1);
    env.sluice(["extract", &spec, "--resume"]).run().success();
    assert!(files(&checkpoints).is_empty());

    // A run that started a moment ago but was last saved long ago is old: its parts and
    // its checkpoint go, and there is nothing left to go on with.
    interrupt();
    let before = files(&env.staging().join("kept/items")).len();
    saved_at("2020-01-01T00:00:00Z");
    let gc = env.sluice(["gc", &spec, "--older-than", "1d"]).run().success();
    assert!(gc.stdout.contains("removed incomplete run"), "{}", gc.stdout);
    assert!(files(&checkpoints).is_empty(), "{}", gc.stdout);
    assert!(files(&env.staging().join("kept/items")).len() < before, "{}", gc.stdout);
    let resumed = env.sluice(["extract", &spec, "--resume"]).run();
    assert_ne!(resumed.code, 0, "{resumed:?}");
}

/// `sluice args…` under `/usr/bin/time -v`: the run and its peak resident memory in MiB.
fn measured(env: &Env, args: &[&str]) -> (Run, u64) {
    assert!(
        Path::new("/usr/bin/time").exists(),
        "these tests measure peak memory with GNU time: apt-get install time"
    );
    let mut argv = vec!["-v", env!("CARGO_BIN_EXE_sluice")];
    argv.extend(args);
    let out = std::process::Command::new("/usr/bin/time")
        .args(&argv)
        .current_dir(env.dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let run = Run::from(out);
    let kb: u64 = run
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {}", run.stderr));
    (run, kb / 1024)
}

/// A server answering every request with `head` then `chunk` over and over, until the
/// client hangs up: an endless body.
fn endless(head: &'static str, chunk: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(head.as_bytes());
                let block: Vec<u8> = chunk.iter().copied().cycle().take(1 << 20).collect();
                while conn.write_all(&block).is_ok() {}
            });
        }
    });
    base
}

#[test]
fn hostile_answers_stay_within_the_caps() {
    use std::io::Write;
    let env = Env::new();
    // What the binary takes for a run that reads nothing (a debug build maps more code
    // than a release one); on it, the default 256 MiB cap and a small margin. (A release
    // build: 23 MB reading nothing, 281 MB for the bomb.)
    let (_, base) = measured(&env, &["run", &env.spec("base", "missing", "append", DEFAULT)]);
    let limit_mb = base + 256 + 16;
    // A gzip bomb: 300 MiB of spaces in 300 KiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = vec![b' '; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&block).unwrap();
    }
    env.api
        .put("bomb", gz.finish().unwrap(), &[("content-encoding", "gzip")]);
    let spec = env.spec("bomb", "bomb", "append", DEFAULT);
    let (run, mb) = measured(&env, &["run", &spec]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("larger than"), "{}", run.stderr);
    assert!(mb < limit_mb, "a gzip bomb took {mb} MB");
    eprintln!("peak RSS, a gzip bomb: {mb} MB (a run reading nothing: {base} MB)");

    // An endless body.
    let server = endless(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"results\": [",
        b"{\"id\": 1, \"v\": \"x\"}, ",
    );
    let endless_spec = env.spec("endless", "x", "append", DEFAULT);
    let text = std::fs::read_to_string(&endless_spec)
        .unwrap()
        .replace(&env.api.base, &server);
    std::fs::write(&endless_spec, text.replace("path: /dyn/x", "path: /items")).unwrap();
    let (run, mb) = measured(&env, &["run", &endless_spec]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("larger than"), "{}", run.stderr);
    assert!(mb < limit_mb, "an endless body took {mb} MB");
    eprintln!("peak RSS, an endless body: {mb} MB (a run reading nothing: {base} MB)");

    // An endless OAuth2 token answer.
    let token = endless(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"access_token\": \"",
        b"abcdefgh",
    );
    let oauth = std::fs::read_to_string(&spec).unwrap().replace(
        "  base_url:",
        &format!("  auth: {{type: oauth2, grant: client_credentials, token_url: \"{token}/token\", client_id: id, client_secret: \"${{CS}}\"}}\n  base_url:"),
    );
    let oauth_spec = env.dir.path().join("oauth.yaml");
    std::fs::write(&oauth_spec, oauth).unwrap();
    let oauth_spec = oauth_spec.to_str().unwrap();
    let (run, mb) = {
        std::env::set_var("CS", "client-secret-value");
        measured(&env, &["run", oauth_spec])
    };
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("larger than 1024 KiB"), "{}", run.stderr);
    assert!(!run.stderr.contains("client-secret-value"));
    assert!(mb < base + 24, "an endless token answer took {mb} MB");
    eprintln!("peak RSS, an endless token answer: {mb} MB (a run reading nothing: {base} MB)");

    // One 50 MB record loads, within the same bound.
    let big = "y".repeat(50 << 20);
    env.api.put(
        "big",
        json!({"results": [{"id": 1, "v": big}], "next": null}).to_string(),
        &[],
    );
    let big_spec = env.spec("big", "big", "append", DEFAULT);
    let (run, mb) = measured(&env, &["run", &big_spec]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.rows("big", "SELECT length(v), '' FROM item")[0].0, 50 << 20);
    assert!(mb < limit_mb, "a 50 MB record took {mb} MB");
    eprintln!("peak RSS, a 50 MB record: {mb} MB (a run reading nothing: {base} MB)");
}

#[test]
fn an_append_table_with_a_primary_key_fails_before_extracting() {
    let env = Env::new();
    env.page("p", records(30, "a"), None);
    let spec = env.spec("dup", "p", "append", DEFAULT);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("write: append", "write: append\n      primary_key: [id]");
    std::fs::write(&spec, text).unwrap();
    let v = env.sluice(["validate", &spec]).run().success();
    assert!(
        v.stdout.contains("the second run fails on duplicate keys"),
        "{}",
        v.stdout
    );
    env.sluice(["run", &spec]).run().success();
    let requests = env.api.requests().len();
    let second = env.sluice(["run", &spec]).run().failure(1);
    assert!(
        second.stderr.contains("already holds rows") && second.stderr.contains("use `write: merge`"),
        "{}",
        second.stderr
    );
    assert_eq!(env.api.requests().len(), requests, "the API was read");
    assert_eq!(env.rows("dup", "SELECT count(*), '' FROM item")[0].0, 30);
}

#[test]
fn validate_refuses_secret_defaults_and_system_columns() {
    let env = Env::new();
    let spec = env.spec("v", "p", "append", DEFAULT);
    let base = std::fs::read_to_string(&spec).unwrap();
    let secret = base.replace(
        "  base_url:",
        "  auth: {type: bearer, token: \"${API_TOKEN:-sk_live_51abcdef}\"}\n  base_url:",
    );
    std::fs::write(&spec, secret).unwrap();
    let v = env.sluice(["validate", &spec]).run().failure(1);
    assert!(v.stdout.contains("the default of a secret is a secret"), "{}", v.stdout);
    assert!(!v.stdout.contains("sk_live_51abcdef") || v.stdout.contains("token: \"${API_TOKEN:-sk_live_51abcdef}\""));
    for system in ["ctid", "xmin"] {
        std::fs::write(
            &spec,
            base.replace("{name: v, type: text", &format!("{{name: {system}, type: text")),
        )
        .unwrap();
        let v = env.sluice(["validate", &spec]).run().failure(1);
        assert!(v.stdout.contains("PostgreSQL system column"), "{}", v.stdout);
    }
}

#[test]
fn long_table_names_keep_their_constraints_apart_in_postgresql() {
    let api = ApiServer::start();
    let db = crate::support::pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    api.put("p", json!({"results": records(3, "a"), "next": null}).to_string(), &[]);
    // Two tables alike in their first 60 bytes: PostgreSQL would cut `<table>_pkey` of
    // both to one name.
    let long = "a".repeat(58);
    let resource = |suffix: &str| {
        format!(
            r#"  - name: r{suffix}
    path: /dyn/p
    records: $.results[*]
    table:
      name: {long}_{suffix}
      write: merge
      primary_key: [id]
      columns:
        - {{name: id, type: integer, path: $.id}}
"#
        )
    };
    let text = format!(
        "version: 1\nname: long\nsource:\n  base_url: {}\nstaging:\n  location: {}\nwarehouse:\n  url: {db}\n  schema: long\nresources:\n{}{}",
        api.base,
        dir.path().join("staging").display(),
        resource("one"),
        resource("two")
    );
    let spec = dir.path().join("long.yaml");
    std::fs::write(&spec, text).unwrap();
    let spec = spec.to_str().unwrap();
    Sluice::new(["validate", spec]).run().success();
    Sluice::new(["run", spec]).run().success();
    Sluice::new(["run", spec]).run().success();
    let names = crate::support::pg::query(
        &db,
        "SELECT conname FROM pg_constraint WHERE connamespace = 'long'::regnamespace ORDER BY 1",
    );
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    assert!(names.iter().all(|n| n[0].as_deref().is_some_and(|n| n.len() <= 63)));
}

#[test]
fn init_masks_userinfo_and_escapes_any_key() {
    let env = Env::new();
    let body = json!({"results": [
        {"id": 1, "line\nbreak": "a", "nul\u{0}key": "b", "it's": "c", "tab\tkey": "d"},
        {"id": 2, "line\nbreak": "e", "nul\u{0}key": "f", "it's": "g", "tab\tkey": "h"}
    ]});
    env.api.put("keys", body.to_string(), &[]);
    let url = env.api.base.replace("http://", "http://ann:hunter2@") + "/dyn/keys";
    let out = env.dir.path().join("keys.yaml");
    let init = env
        .sluice(["init", &url, "--name", "keys", "-o", out.to_str().unwrap()])
        .run()
        .success();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("ann:"), "{text}");
    assert!(!init.stderr.contains("hunter2"), "{}", init.stderr);
    env.sluice(["validate", out.to_str().unwrap()]).run().success();
    env.sluice(["run", out.to_str().unwrap()]).run().success();
    let c = rusqlite::Connection::open(env.dir.path().join(".sluice/keys.db")).unwrap();
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('keys')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Every key became a column that loaded its value.
    let values: Vec<String> = cols
        .iter()
        .filter(|c| *c != "id" && !c.starts_with("_sluice"))
        .map(|col| {
            c.query_row(&format!("SELECT \"{col}\" FROM keys WHERE id = 2"), [], |r| r.get(0))
                .unwrap()
        })
        .collect();
    let mut sorted = values.clone();
    sorted.sort();
    assert_eq!(sorted, ["e", "f", "g", "h"], "{cols:?} {text}");
}
