//! Test support: the real servers the integration tests talk to, and a CLI runner.

#![allow(dead_code)]

pub mod api;
pub mod files;
pub mod lambda;
pub mod pg;
pub mod reach;
pub mod s3;
pub mod sfn;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Serve `service` over HTTP on a loopback listener, from a runtime thread of its own.
pub fn serve<S, B>(listener: std::net::TcpListener, service: S)
where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
    });
}

/// The package root (the tests' working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Every record of a recorded Rick and Morty endpoint (`character`, `location`,
/// `episode`), in page order.
pub fn recorded(endpoint: &str) -> Vec<serde_json::Value> {
    (1..)
        .map_while(|n| std::fs::read_to_string(fixture(&format!("api/rickandmorty/{endpoint}/page-{n}.json"))).ok())
        .flat_map(|text| {
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["results"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

/// A `sluice` invocation with a clean environment for the variables specs read.
pub struct Sluice {
    cmd: Command,
}

impl Sluice {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args).current_dir(root());
        for var in [
            "DATABASE_URL",
            "SLUICE_STAGING",
            "RICKANDMORTY_BASE_URL",
            "COINCAP_BASE_URL",
            "COINCAP_TOKEN",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        Sluice { cmd }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Point the reference pipelines and the test specs at the replay API.
    pub fn api(self, api: &api::ApiServer) -> Self {
        self.env("RICKANDMORTY_BASE_URL", format!("{}/api", api.base))
            .env("COINCAP_BASE_URL", format!("{}/v3", api.base))
            .env("COINCAP_TOKEN", "test-coincap-key-123")
            .env("API_BASE", &api.base)
    }

    pub fn envs(mut self, vars: Vec<(&'static str, String)>) -> Self {
        for (k, v) in vars {
            self.cmd.env(k, v);
        }
        self
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Start it in the background, stdout and stderr into files (see [`Background`]).
    pub fn spawn(mut self, logs: &Path) -> Background {
        let (out, err) = (logs.join("stdout.log"), logs.join("stderr.log"));
        self.cmd
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let child = self.cmd.spawn().expect("the sluice binary starts");
        Background { child, out, err }
    }

    pub fn run(mut self) -> Run {
        let out = self.cmd.output().expect("the sluice binary runs");
        Run::from(out)
    }
}

/// A `sluice` process running in the background, killed on drop.
pub struct Background {
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    /// Send it a signal (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }
    /// Wait for it to end.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("the sluice process ends")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished `sluice` printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The run id a `run`, `extract` or `load` printed on its first line.
    pub fn run_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("run "))
            .and_then(|l| l.split_whitespace().next())
            .expect("a `run <id> …` line")
            .to_string()
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "sluice failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Compare `actual` with the snapshot file; `SLUICE_BLESS=1` rewrites the snapshot.
#[track_caller]
pub fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with SLUICE_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "snapshot {} differs (SLUICE_BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// An attribute of a draw.io cell: on the `mxCell`, or for `id` and `value` on the
/// `UserObject` around it (which carries a tooltip or a link; its `label` is the value).
pub fn cell_attr<'a>(cell: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    cell.attribute(name).or_else(|| {
        let object = cell.parent().filter(|p| p.has_tag_name("UserObject"))?;
        match name {
            "value" => object.attribute("label"),
            "id" | "tooltip" | "link" => object.attribute(name),
            _ => None,
        }
    })
}
