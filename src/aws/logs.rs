//! What a Lambda function writes on stdout, where CloudWatch Logs keeps one event per
//! line: log lines as flat JSON objects (`timestamp`, `level`, `message`, then
//! `function_request_id` and `cold_start` of the invocation being served, then the
//! event's own fields), and the run's figures as CloudWatch metrics in the embedded
//! metric format (EMF), which CloudWatch turns into metrics without an API call.

use std::sync::Mutex;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::{format::Writer, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The namespace of sluice's metrics.
pub(crate) const NAMESPACE: &str = "sluice";
/// The metric a successful load adds 1 to (the freshness alarm watches it).
pub(crate) const RUNS_LOADED: &str = "RunsLoaded";

/// The invocation being served: a function serves one at a time.
static INVOCATION: Mutex<Option<(String, bool)>> = Mutex::new(None);

/// Mark the lines written from now on as those of invocation `request_id`.
pub(crate) fn serving(request_id: &str, cold_start: bool) {
    *INVOCATION.lock().unwrap_or_else(|e| e.into_inner()) = Some((request_id.to_string(), cold_start));
}

/// The log line format of a Lambda function.
pub(crate) struct LambdaJson;

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        // lambda_runtime logs each failed invocation's error again, as Debug text: the
        // handler's own "invocation failed" line says it once, with its fields.
        let message = fields.0.get("message").and_then(Value::as_str).unwrap_or_default();
        if event.metadata().target().starts_with("lambda_runtime") && message.starts_with("Diagnostic {") {
            return Ok(());
        }
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert("level".into(), json!(event.metadata().level().as_str()));
        line.insert(
            "message".into(),
            fields.0.remove("message").unwrap_or_else(|| json!("")),
        );
        if let Some((id, cold)) = INVOCATION.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            line.insert("function_request_id".into(), json!(id));
            line.insert("cold_start".into(), json!(cold));
        }
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), json!(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), json!(value));
    }
}

/// One EMF line: `metrics` (name, unit, value) of `pipeline` (and `resource`), each
/// under the dimensions given.
pub(crate) fn metric_line(pipeline: &str, resource: Option<&str>, metrics: &[(&str, &str, f64)]) -> Value {
    let mut dimensions = vec!["Pipeline"];
    if resource.is_some() {
        dimensions.push("Resource");
    }
    let mut line = json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>()
            }]
        },
        "Pipeline": pipeline,
    });
    if let Some(r) = resource {
        line["Resource"] = json!(r);
    }
    for (name, _, value) in metrics {
        line[*name] = json!(value);
    }
    line
}

/// Write EMF lines on stdout, each whole.
pub(crate) fn emit(lines: &[Value]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_are_emf() {
        let l = metric_line(
            "coincap",
            Some("exchanges"),
            &[("Records", "Count", 12.0), ("Bytes", "Bytes", 300.0)],
        );
        assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Namespace"], "sluice");
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Pipeline", "Resource"]])
        );
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Records", "Unit": "Count"}, {"Name": "Bytes", "Unit": "Bytes"}])
        );
        assert_eq!(
            (l["Pipeline"].as_str(), l["Resource"].as_str()),
            (Some("coincap"), Some("exchanges"))
        );
        assert_eq!(l["Records"], 12.0);
        assert!(l["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }
}
