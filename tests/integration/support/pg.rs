//! An ephemeral PostgreSQL cluster for the tests: `initdb` + `pg_ctl` in a temp dir on a
//! free loopback port (as the `postgres` user when the tests run as root), or the server
//! named by `TEST_DATABASE_URL`. Each test gets a database of its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

struct Cluster {
    /// URL of the maintenance database, without the database name.
    base: String,
    /// The self-signed certificate the cluster serves TLS with (own clusters only).
    ca: Option<PathBuf>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn find_bin(name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Cluster {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        let base = url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(url);
        return Cluster { base, ca: None };
    }
    let missing = "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
                   /usr/lib/postgresql/*/bin: install them (`apt-get install -y postgresql`) or set \
                   TEST_DATABASE_URL to a server the tests may create databases on";
    let initdb = find_bin("initdb").expect(missing);
    let pg_ctl = find_bin("pg_ctl").expect(missing);
    let dir = tempfile::Builder::new()
        .prefix("sluice-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let data = dir.join("data");
    let root = is_root();
    let as_pg = |bin: &PathBuf| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        c.current_dir(&dir);
        c
    };
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "chown of {} to the postgres user failed: is there a `postgres` user?",
            dir.display()
        );
    }
    let out = as_pg(&initdb)
        .args([
            "--no-sync",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // TLS, as Amazon RDS enforces it: a test CA and a server certificate for localhost.
    let (key, crt) = (data.join("server.key"), data.join("server.crt"));
    let ca = dir.join("ca.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl is needed to give the test cluster a TLS certificate: apt-get install -y openssl");
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let args = |v: Vec<std::ffi::OsString>| openssl(&v.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    args(vec![
        os("req"),
        os("-new"),
        os("-x509"),
        os("-days"),
        os("2"),
        os("-nodes"),
        os("-subj"),
        os("/CN=sluice test CA"),
        os("-keyout"),
        os("ca.key"),
        os("-out"),
        ca.clone().into(),
    ]);
    args(vec![
        os("req"),
        os("-new"),
        os("-nodes"),
        os("-subj"),
        os("/CN=localhost"),
        os("-keyout"),
        key.clone().into(),
        os("-out"),
        os("server.csr"),
    ]);
    args(vec![
        os("x509"),
        os("-req"),
        os("-in"),
        os("server.csr"),
        os("-CA"),
        ca.clone().into(),
        os("-CAkey"),
        os("ca.key"),
        os("-CAcreateserial"),
        os("-days"),
        os("2"),
        os("-extfile"),
        ext.into(),
        os("-out"),
        crt.clone().into(),
    ]);
    if root {
        Command::new("chown")
            .args(["postgres:"])
            .arg(&key)
            .arg(&crt)
            .status()
            .unwrap();
    }
    Command::new("chmod").arg("600").arg(&key).status().unwrap();
    let port = free_port();
    let opts = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50 -c ssl=on",
        dir.display()
    );
    let log = dir.join("postgres.log");
    let out = as_pg(&pg_ctl)
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-o", &opts])
        .output()
        .expect("run pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl start failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Stop the cluster when this test process ends, however it ends.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser} {pg_ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        runuser = if root { "runuser -u postgres --" } else { "" },
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    // Deliberately not waited on: it outlives this process to stop the cluster.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .args(["-c", &stop])
        .spawn()
        .expect("spawn the cluster watchdog");
    Cluster {
        base: format!("postgres://postgres@127.0.0.1:{port}"),
        ca: Some(ca),
    }
}

/// A fresh, empty database; returns its URL.
pub fn fresh_database() -> String {
    let cluster = CLUSTER.get_or_init(start);
    let name = format!(
        "sluice_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    execute(
        &format!("{}/postgres", cluster.base),
        &format!("CREATE DATABASE {name}"),
    );
    format!("{}/{name}", cluster.base)
}

/// The CA certificate of the harness's own cluster; `None` with `TEST_DATABASE_URL`.
pub fn tls_ca() -> Option<PathBuf> {
    CLUSTER.get_or_init(start).ca.clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Run SQL statements (simple protocol); panics with the server's message on failure.
pub fn execute(url: &str, sql: &str) {
    try_execute(url, sql).unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"));
}

pub fn try_execute(url: &str, sql: &str) -> Result<(), String> {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        client.batch_execute(sql).await.map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        })
    })
}

/// Rows of a query as text (NULL → None).
pub fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        let msgs = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("query failed: {e}\n{sql}"));
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(String::from)).collect())
                }
                _ => None,
            })
            .collect()
    })
}

/// A single value.
pub fn scalar(url: &str, sql: &str) -> Option<String> {
    let rows = query(url, sql);
    assert_eq!(rows.len(), 1, "expected one row from {sql}");
    rows[0][0].clone()
}
