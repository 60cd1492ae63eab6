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
fn an_interrupted_run_commits_nothing_and_removes_what_it_staged() {
    let env = Env::new();
    env.page("p1", records(400, "a"), Some("p2"));
    env.page("p2", records(1, "b"), None);
    let spec = env.spec("stop", "p1", "append", DEFAULT);
    let logs = tempfile::tempdir().unwrap();
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        env.api.fault("/dyn/p2", Fault::Stall(Duration::from_secs(5)), 1);
        let mut bg = env.sluice(["run", &spec]).spawn(logs.path());
        std::thread::sleep(Duration::from_millis(2000));
        assert!(!files(&env.staging().join("stop/items")).is_empty(), "{}", bg.stderr());
        bg.signal(signal);
        assert_eq!(wait(&mut bg), code, "{}", bg.stderr());
        let said = bg.stderr();
        assert!(
            said.contains(&format!("interrupted by SIG{signal}: nothing was committed")),
            "{said}"
        );
        let left: Vec<String> = files(&env.staging())
            .into_iter()
            .filter(|f| !f.starts_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let c = rusqlite::Connection::open(env.db("stop")).unwrap();
        let rows: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'item'", [], |r| {
                r.get(0)
            })
            .unwrap();
        if rows > 0 {
            let n: i64 = c.query_row("SELECT count(*) FROM item", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 0);
        }
    }
}
