//! The AWS Lambda Runtime API on loopback, as a function's `bootstrap` sees it:
//! `GET /2018-06-01/runtime/invocation/next` hands out the queued events (long-polling
//! while there are none) with the `Lambda-Runtime-Aws-Request-Id`,
//! `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn` and
//! `Lambda-Runtime-Trace-Id` headers; `POST …/invocation/{id}/response` and
//! `…/invocation/{id}/error` record the outcome; `POST /runtime/init/error` too.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::Value;

/// What the function posted for one invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request_id: String,
    /// `response` or `error` (or `init-error`).
    pub kind: String,
    pub body: Value,
    /// The `Lambda-Runtime-Function-Error-Type` header of an error.
    pub error_type: Option<String>,
}

struct Queued {
    request_id: String,
    event: Value,
    deadline_ms: u64,
}

#[derive(Default)]
struct State {
    queue: Mutex<VecDeque<Queued>>,
    queued: tokio::sync::Notify,
    outcomes: Mutex<Vec<Outcome>>,
    posted: Condvar,
    seq: Mutex<u32>,
}

pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    state: Arc<State>,
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if path == "/2018-06-01/runtime/invocation/next" {
        // Long-poll, as Lambda does, until an event is queued.
        let next = loop {
            let notified = state.queued.notified();
            if let Some(q) = state.queue.lock().unwrap().pop_front() {
                break q;
            }
            notified.await;
        };
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &next.request_id)
            .header("lambda-runtime-deadline-ms", next.deadline_ms.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:sluice-test",
            )
            .header("lambda-runtime-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793")
            .body(Full::new(Bytes::from(next.event.to_string())))
            .unwrap();
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rest = path.strip_prefix("/2018-06-01/runtime/");
    let (request_id, kind) = match rest.map(|r| r.split('/').collect::<Vec<_>>()).as_deref() {
        Some(["invocation", id, "response"]) => (id.to_string(), "response"),
        Some(["invocation", id, "error"]) => (id.to_string(), "error"),
        Some(["init", "error"]) => (String::new(), "init-error"),
        _ => return reply(404, r#"{"errorMessage":"unknown path"}"#),
    };
    state.outcomes.lock().unwrap().push(Outcome {
        request_id,
        kind: kind.to_string(),
        body,
        error_type,
    });
    state.posted.notify_all();
    reply(202, r#"{"status":"OK"}"#)
}

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the Runtime API");
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let served = state.clone();
        super::serve(
            listener,
            hyper::service::service_fn(move |req| {
                let state = served.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            }),
        );
        RuntimeApi { address, state }
    }

    /// Queue an event with `time` left before its deadline; returns its request id.
    pub fn invoke(&self, event: Value, time: Duration) -> String {
        let request_id = {
            let mut seq = self.state.seq.lock().unwrap();
            *seq += 1;
            format!("req-{:04}", *seq)
        };
        self.state.queue.lock().unwrap().push_back(Queued {
            request_id: request_id.clone(),
            event,
            deadline_ms: epoch_ms() + time.as_millis() as u64,
        });
        self.state.queued.notify_one();
        request_id
    }

    /// Wait for what the function posts for `request_id`.
    pub fn outcome(&self, request_id: &str, timeout: Duration) -> Outcome {
        let until = Instant::now() + timeout;
        let mut outcomes = self.state.outcomes.lock().unwrap();
        loop {
            if let Some(o) = outcomes.iter().find(|o| o.request_id == request_id) {
                return o.clone();
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no response or error for {request_id} within {timeout:?}; posted so far: {:?}",
                *outcomes
            );
            outcomes = self.state.posted.wait_timeout(outcomes, left).unwrap().0;
        }
    }

    /// The environment of a function process talking to this API.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", "sluice-test".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/sluice-test".into()),
        ]
    }
}
