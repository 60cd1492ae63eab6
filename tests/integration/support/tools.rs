//! Python tools the tests run: cfn-lint, checkov and moto's server (Secrets Manager,
//! CloudFormation, IAM), from the virtualenv `scripts/test` makes (`.venv`, or
//! `SLUICE_TEST_VENV`; checkov in `.venv/checkov`), else from PATH. A missing tool fails
//! the test with the command that installs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install -r tests/tools.txt, and python3 -m venv .venv/checkov && .venv/checkov/bin/pip install -r tests/checkov.txt (or run bash scripts/test)";

/// The path of a tool from the virtualenv or PATH; panics with how to install it.
/// `checkov` has a virtualenv of its own inside it.
pub fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("SLUICE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join(".venv"));
    let venv = if name == "checkov" { venv.join("checkov") } else { venv };
    let candidate = venv.join("bin").join(name);
    if candidate.is_file() {
        return candidate;
    }
    if let Some(found) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return found;
    }
    panic!(
        "`{name}` is needed by this test and was found neither in {} nor on PATH; install it: {INSTALL}",
        venv.display()
    );
}

/// moto's server on a free loopback port, stopped on drop.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "moto_server did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Create a Secrets Manager secret holding `value`; returns its ARN.
    pub fn secret(&self, name: &str, value: &str) -> String {
        self.secrets(|client| async move {
            let out = client
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("create the secret in moto");
            out.arn().expect("an ARN").to_string()
        })
    }

    /// Give secret `name` a new value (a rotation).
    pub fn rotate(&self, name: &str, value: &str) {
        self.secrets(|client| async move {
            client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .expect("put the secret's new value in moto");
        })
    }

    fn secrets<F, T>(&self, call: impl FnOnce(aws_sdk_secretsmanager::Client) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        rt.block_on(call(aws_sdk_secretsmanager::Client::from_conf(conf)))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
