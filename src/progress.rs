//! Progress on a terminal: a bar per resource being extracted (pages, records, bytes,
//! rate; a real bar with an ETA once the API reports its total) and one per resource being loaded, drawn by indicatif through tracing-indicatif
//! so that log lines print above the bars. Bars belong to spans; without the layer (stderr
//! not a terminal, `--quiet`, JSON logs) the spans draw nothing and the log lines say the
//! same in plain text. The only file that calls into indicatif.

use std::time::Instant;

use indicatif::ProgressStyle;
use tracing::Span;
use tracing_indicatif::filter::IndicatifFilter;
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Install logging with progress bars: log lines go to stderr above the bars. Only the
/// spans made here get a bar (none of the libraries' spans).
pub(crate) fn init_with_bars(filter: EnvFilter) -> bool {
    let bars: IndicatifLayer<_> = IndicatifLayer::new();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(bars.get_stderr_writer())
        .with_ansi(true)
        .with_target(false)
        .without_time();
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(bars.with_filter(IndicatifFilter::new(false)))
        .try_init()
        .is_ok()
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The bar of one resource being extracted.
pub(crate) struct ExtractBar {
    span: Span,
    started: Instant,
    pages: u64,
    records: u64,
    bytes: u64,
    /// The records the API reported, once a page said.
    total: Option<u64>,
}

impl ExtractBar {
    pub(crate) fn new(resource: &str) -> Self {
        let span = tracing::info_span!("extract", indicatif.pb_show = tracing::field::Empty, resource = %resource);
        span.pb_set_style(&style("{spinner} extract {span_fields}: {msg} [{elapsed}]"));
        span.pb_start();
        ExtractBar {
            span,
            started: Instant::now(),
            pages: 0,
            records: 0,
            bytes: 0,
            total: None,
        }
    }

    /// The number of records the API reported: from now on a bar with an ETA.
    pub(crate) fn total(&mut self, records: u64) {
        if self.total == Some(records) {
            return;
        }
        if self.total.is_none() {
            self.span.pb_set_style(&style(
                "{spinner} extract {span_fields}: [{bar:30}] {pos}/{len} records, {msg} (ETA {eta}) [{elapsed}]",
            ));
        }
        self.total = Some(records);
        self.span.pb_set_length(records);
        self.span.pb_set_position(self.records);
    }

    /// One more page of `records` records and `bytes` bytes.
    pub(crate) fn page(&mut self, records: u64, bytes: u64) {
        self.pages += 1;
        self.records += records;
        self.bytes += bytes;
        if self.total.is_some() {
            self.span.pb_set_position(self.records);
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.span.pb_set_message(&format!(
            "{} pages, {} records, {:.1} MB, {:.0} records/s",
            self.pages,
            self.records,
            self.bytes as f64 / 1e6,
            self.records as f64 / secs
        ));
        self.span.pb_tick();
    }
}

/// The bar of one resource being loaded: bytes sent to the warehouse.
pub(crate) struct LoadBar {
    span: Span,
    bytes: u64,
}

impl LoadBar {
    pub(crate) fn new(resource: &str) -> Self {
        let span = tracing::info_span!("load", indicatif.pb_show = tracing::field::Empty, resource = %resource);
        span.pb_set_style(&style("{spinner} load {span_fields}: {msg} [{elapsed}]"));
        span.pb_start();
        LoadBar { span, bytes: 0 }
    }

    pub(crate) fn sent(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.span
            .pb_set_message(&format!("{:.1} MB of rows sent", self.bytes as f64 / 1e6));
        self.span.pb_tick();
    }
}
