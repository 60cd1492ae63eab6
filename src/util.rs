//! Small shared pieces: secret masking, error chains.

use std::sync::{Arc, RwLock};

/// Secret values resolved at run time. Anything shown to a person (logs, errors) passes
/// through [`Secrets::mask`] first.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<RwLock<Vec<String>>>);

impl Secrets {
    pub fn add(&self, secret: &str) {
        // Very short values would mask ordinary text; they are not secrets worth the name.
        if secret.len() >= 4 {
            let mut list = self.0.write().unwrap_or_else(|e| e.into_inner());
            list.push(secret.to_string());
            // Percent-encoded forms appear in URLs.
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret {
                list.push(encoded);
            }
        }
    }

    /// Whether a secret holds `text`.
    pub(crate) fn any_holds(&self, text: &str) -> bool {
        let list = self.0.read().unwrap_or_else(|e| e.into_inner());
        list.iter().any(|s| s.contains(text))
    }

    pub fn mask(&self, text: &str) -> String {
        let list = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in list.iter() {
            out = out.replace(s.as_str(), "****");
        }
        out
    }
}

/// An error and its sources, one `: ` apart, each shown once.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = inner.source();
    }
    s
}

/// The name prefix of every temporary file or folder sluice makes (`sluice-<pid>-`), so
/// that what a killed process left behind can be told from what a live one is writing.
pub(crate) fn temp_prefix() -> String {
    format!("sluice-{}-", std::process::id())
}

/// A temporary file in `dir`, named with [`temp_prefix`].
pub(crate) fn temp_file_in(dir: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir)
}

/// A temporary file in the folder of `path`, to [`persist`] onto it once written whole.
pub(crate) fn temp_file_beside(path: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => temp_file_in(d),
        _ => temp_file_in(std::path::Path::new(".")),
    }
}

/// Sync a file made with [`temp_file_beside`] and rename it onto `path`.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &std::path::Path) -> std::io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Write a file whole or not at all: a temporary file beside it, then a rename.
pub(crate) fn write_file_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = temp_file_beside(path)?;
    tmp.write_all(bytes)?;
    persist(tmp, path)
}

/// A temporary folder under the system's temporary folder, named with [`temp_prefix`] and
/// removed when dropped.
pub(crate) fn temp_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(&temp_prefix()).tempdir()
}

/// Remove the entries of `dir` left by sluice processes that are no longer running (as
/// told by their [`temp_prefix`]); returns how many were removed. Where it cannot be told
/// whether a process runs (no `/proc`), nothing is removed.
pub(crate) fn sweep_orphans(dir: &std::path::Path) -> usize {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("sluice-"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if proc.join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            tracing::info!(path = %path.display(), "removed what an ended sluice process left behind");
            removed += 1;
        }
    }
    removed
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

/// What a JSON value is, in words: "an object with keys `a`, `b`", "an array of 20
/// objects", "the number 3".
pub(crate) fn describe(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) if m.is_empty() => "an empty object".into(),
        serde_json::Value::Object(m) => format!(
            "an object with keys {}",
            m.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
        serde_json::Value::Array(a) => {
            let objects = a.iter().filter(|v| v.is_object()).count();
            match (a.len(), objects) {
                (0, _) => "an empty array".into(),
                (n, o) if o == n => format!("an array of {n} object{}", if n == 1 { "" } else { "s" }),
                (n, _) => format!("an array of {n} item{}", if n == 1 { "" } else { "s" }),
            }
        }
        serde_json::Value::String(_) => "a string".into(),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::Bool(b) => format!("`{b}`"),
        serde_json::Value::Null => "`null`".into(),
    }
}

/// The signal that asked the process to stop (SIGINT 2, SIGTERM 15), once one did.
static INTERRUPT: std::sync::OnceLock<tokio::sync::watch::Receiver<Option<i32>>> = std::sync::OnceLock::new();

/// Watch SIGINT and SIGTERM from now on (the CLI's runtime does, at its start): a run
/// that awaits [`interrupted`] then stops cleanly instead of being killed mid-way.
pub(crate) fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(None);
    if INTERRUPT.set(rx).is_err() {
        return;
    }
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        let got = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        let _ = tx.send(Some(got));
        // Kept alive, so that the receivers see the signal rather than a closed channel.
        std::future::pending::<()>().await;
    });
}

/// Resolves with the signal number once SIGINT or SIGTERM arrived; never, where signals
/// are not watched.
pub(crate) async fn interrupted() -> i32 {
    let Some(rx) = INTERRUPT.get() else {
        return std::future::pending().await;
    };
    let mut rx = rx.clone();
    let got = rx.wait_for(Option::is_some).await.map(|got| got.unwrap_or(15));
    match got {
        Ok(signal) => signal,
        Err(_) => std::future::pending().await,
    }
}

/// `SIGINT` or `SIGTERM`.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    if signal == 2 {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// Whether the caller reports a failed run's whole error once (a Lambda function's
/// "invocation failed" line), so that a resource's failure is not logged apart too.
static WHOLE_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Say that failures are reported whole by the caller (see [`parts_of_errors_logged`]).
pub(crate) fn report_whole_errors() {
    WHOLE_ERRORS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a step logs the parts of an error it returns (a resource's failure), as the
/// CLI does above its final `error:` line.
pub(crate) fn parts_of_errors_logged() -> bool {
    !WHOLE_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `path` below `base` (a base URL): one `/` between them, whatever each has.
pub(crate) fn below(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// A URL as it may be shown: without user name and password.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The first bytes of a body, as text, for error messages.
pub(crate) fn head(body: &[u8]) -> String {
    let n = body.len().min(200);
    let mut s = String::from_utf8_lossy(&body[..n]).replace(['\n', '\r'], " ");
    if body.len() > n {
        s.push('…');
    }
    if s.trim().is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

/// `std::io::Write` into a SHA-256, for `io::copy` (sha2 has no such impl of its own).
pub(crate) struct Sha256Writer<'a>(pub(crate) &'a mut sha2::Sha256);

impl std::io::Write for Sha256Writer<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_of_ended_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_file_in(dir.path()).unwrap();
        // pid 0 is never a process that could have written a file.
        std::fs::create_dir(dir.path().join("sluice-0-abc")).unwrap();
        std::fs::write(dir.path().join("sluice-0-def"), b"x").unwrap();
        std::fs::write(dir.path().join("other-0-x"), b"x").unwrap();
        assert_eq!(sweep_orphans(dir.path()), 2);
        assert!(mine.path().exists());
        assert!(dir.path().join("other-0-x").exists());
    }

    #[test]
    fn masks_plain_and_url_encoded_secrets() {
        let s = Secrets::default();
        s.add("p@ss word");
        assert_eq!(s.mask("x p@ss word y p%40ss+word"), "x **** y ****");
        s.add("abc");
        assert_eq!(s.mask("abc"), "abc");
    }
}
