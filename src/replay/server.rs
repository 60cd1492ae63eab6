//! The loopback server `sluice test` points a spec's client at: every request names its
//! real URL (in [`super::URL_HEADER`]) and gets the recorded answer to the same method,
//! URL and body, in the order they were recorded; anything else gets `421 Misdirected
//! Request` and is reported with the nearest recorded request.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::Exchange;
use crate::util::Secrets;

/// A request the recording has no answer for.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Unexpected {
    pub resource: String,
    pub page: u64,
    pub method: String,
    pub url: String,
    /// The recorded request most like it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<String>,
    /// When the same request was recorded, but fewer times than it was made.
    pub repeated: bool,
}

#[derive(Debug, Default)]
struct State {
    exchanges: Vec<Exchange>,
    used: Vec<bool>,
    unexpected: Vec<Unexpected>,
}

/// The running server; it stops when dropped.
pub(crate) struct Server {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serve `exchanges` on a free loopback port; incoming URLs and bodies are masked with
    /// `secrets` before they are looked up, as they were when recorded.
    pub(crate) async fn start(exchanges: Vec<Exchange>, secrets: Secrets) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            used: vec![false; exchanges.len()],
            exchanges,
            unexpected: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, secrets) = (shared.clone(), secrets.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &state, &secrets).await;
                });
            }
        });
        Ok(Server { addr, state, task })
    }

    /// The recorded exchanges no request asked for.
    pub(crate) fn unused(&self) -> Vec<Exchange> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.exchanges
            .iter()
            .zip(&s.used)
            .filter(|(_, used)| !**used)
            .map(|(x, _)| Exchange {
                response: Vec::new(),
                ..x.clone()
            })
            .collect()
    }

    /// The requests the recording had no answer for.
    pub(crate) fn unexpected(&self) -> Vec<Unexpected> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).unexpected.clone()
    }

    /// How many recorded exchanges were served.
    pub(crate) fn served(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.used.iter().filter(|u| **u).count()
    }
}

/// Answer one connection's requests.
async fn serve(stream: tokio::net::TcpStream, state: &Mutex<State>, secrets: &Secrets) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(());
    }
    let method = line.split_whitespace().next().unwrap_or_default().to_string();
    let (mut length, mut url, mut resource, mut page) = (0usize, String::new(), String::new(), 0u64);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await? == 0 {
            return Ok(());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            super::URL_HEADER => url = value.to_string(),
            super::RESOURCE_HEADER => resource = value.to_string(),
            super::PAGE_HEADER => page = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let body = (!body.is_empty()).then(|| secrets.mask(&String::from_utf8_lossy(&body)));
    let url = secrets.mask(&url);
    let answer = answer(state, &method, &url, body.as_deref(), resource, page);
    let (status, headers, response) = match answer {
        Some(x) => (x.status, x.headers, x.response),
        None => (
            421,
            vec![("content-type".to_string(), "text/plain".to_string())],
            format!("sluice test: the recording has no answer for {method} {url}").into_bytes(),
        ),
    };
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        response.len()
    ));
    let stream = reader.get_mut();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response).await?;
    stream.flush().await?;
    Ok(())
}

/// The first unused recorded answer to this request, marked used; or `None`, with the
/// request noted as unexpected.
fn answer(
    state: &Mutex<State>,
    method: &str,
    url: &str,
    body: Option<&str>,
    resource: String,
    page: u64,
) -> Option<Exchange> {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let same = |x: &Exchange| x.method == method && x.url == url && same_body(x.body.as_deref(), body);
    if let Some(i) = (0..s.exchanges.len()).find(|&i| !s.used[i] && same(&s.exchanges[i])) {
        s.used[i] = true;
        return Some(s.exchanges[i].clone());
    }
    let repeated = s.exchanges.iter().any(same);
    let nearest = s
        .exchanges
        .iter()
        .filter(|x| x.method == method)
        .max_by_key(|x| {
            let common = x.url.bytes().zip(url.bytes()).take_while(|(a, b)| a == b).count();
            (common, usize::MAX - x.url.len().abs_diff(url.len()))
        })
        .map(|x| format!("{} {}", x.method, x.url));
    s.unexpected.push(Unexpected {
        resource,
        page,
        method: method.to_string(),
        url: url.to_string(),
        nearest,
        repeated,
    });
    None
}

/// Bodies are the same when their text is, or their JSON.
fn same_body(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (
            serde_json::from_str::<serde_json::Value>(a),
            serde_json::from_str::<serde_json::Value>(b),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status")
}
