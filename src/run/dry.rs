//! `extract --dry-run` and `run --dry-run`: a page or a few records fetched and mapped by
//! the load's own code, nothing staged or loaded, and a coverage table of the columns.

use super::extract::ExtractOptions;
use super::{parents_first, select, RunError, RunInfo};
use crate::extract::session::Session;
use crate::extract::{ExtractError, RecordSink, Records};
use crate::resolve::Needs;
use crate::spec::pipeline::{Pipeline, Resource};
use crate::util::Secrets;
use serde_json::Value;

/// Collects records for a dry run, as their JSON text on one line each (parsed later,
/// where a record that cannot be is a record error, not a crash).
pub(crate) struct CollectSink {
    pub records: Vec<String>,
    pub limit: u64,
    /// The records the API reported, when a page said.
    pub total: Option<u64>,
}

impl RecordSink for CollectSink {
    fn total(&mut self, records: u64) {
        self.total = Some(records);
    }

    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        for i in 0..records.len() {
            if self.records.len() as u64 >= self.limit {
                break;
            }
            self.records.push(match records {
                Records::Raw(raw) => {
                    let mut line = Vec::new();
                    crate::stage::writer::compact_json(raw[i].get(), &mut line);
                    String::from_utf8_lossy(&line).into_owned()
                }
                Records::Values(values) => values[i].to_string(),
            });
        }
        Ok((self.records.len() as u64) < self.limit)
    }
}

/// Fetch without staging: up to `limit` records of each selected resource.
pub(crate) async fn extract_dry_run(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
) -> Result<Vec<(String, Vec<String>)>, RunError> {
    let resources = select(p, &opts.resources)?;
    let resolved = crate::resolve::resolve(p, Needs::DRY_RUN, secrets)?;
    let mut http = Session::new(p, &resolved, secrets)?;
    // A dry run reads no warehouse, so no saved state: it starts where a first run would.
    http.starts = crate::extract::session::incremental_starts(&resources, &Default::default())?;
    if !http.starts.is_empty() {
        tracing::info!("dry run: incremental resources start at their `initial`");
    }
    use futures_util::StreamExt;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in parents_first(&resources) {
        // A child is requested for the records its parent's dry run fetched.
        let parents = r.for_each.as_ref().map(|f| {
            let lines = out
                .iter()
                .find(|(name, _)| name == &f.parent)
                .map(|(_, lines)| lines.clone())
                .unwrap_or_default();
            let parent = f.parent.clone();
            futures_util::stream::iter(lines.into_iter().map(move |l| {
                serde_json::from_str(&l)
                    .map_err(|e| ExtractError::Config(format!("a record of `{parent}` is not valid JSON ({e})")))
            }))
            .boxed()
        });
        let mut sink = CollectSink {
            records: Vec::new(),
            limit: opts.limit.unwrap_or(u64::MAX),
            total: None,
        };
        let stats = if opts.limit.is_none() {
            // Default: one page.
            let mut one_page = OnePage(sink);
            let stats = http.extract(p, r, parents, &mut one_page).await?;
            sink = one_page.0;
            stats
        } else {
            http.extract(p, r, parents, &mut sink).await?
        };
        tracing::info!(
            resource = %r.name,
            pages = stats.pages,
            records = sink.records.len(),
            reported_total = sink.total.or(stats.total),
            "dry run fetched"
        );
        out.push((r.name.clone(), sink.records));
    }
    // Back in spec order.
    out.sort_by_key(|(name, _)| resources.iter().position(|r| &r.name == name));
    Ok(out)
}

pub(super) struct OnePage(CollectSink);

impl RecordSink for OnePage {
    fn total(&mut self, records: u64) {
        self.0.total(records);
    }

    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        self.0.page(records).await?;
        Ok(false)
    }
}

/// `run --dry-run`: fetch, map and return the rows that would be loaded, writing nothing.
/// Records are mapped by the same function a load uses, under the same `on_error` policy.
/// Each resource's coverage table (see [`coverage_table`]) goes to `show` as soon as it is
/// known, also when the run then fails on a path that matched nothing.
pub(crate) async fn run_dry(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
    show: &mut (dyn FnMut(String) + Send),
) -> Result<Vec<Value>, RunError> {
    use crate::load::record::{map_record, parse_record, row_json, ColumnError, RecordError, RecordRows, RunMeta};
    use crate::spec::pipeline::OnError;
    let fetched = extract_dry_run(p, opts, secrets).await?;
    let run = RunInfo::new();
    let meta = RunMeta {
        run_id: run.run_id,
        run_time: run.run_time,
        pipeline: p.name().to_string(),
    };
    let mut rows = Vec::new();
    for (name, records) in fetched {
        let r = p.resource(&name).expect("selected from the spec");
        if r.tables.is_empty() {
            show(format!(
                "resource `{name}` has no table: {} records fetched for its children's requests\n",
                records.len()
            ));
            continue;
        }
        let mut mapped = RecordRows::default();
        let first_row = rows.len();
        for (n, line) in records.iter().enumerate() {
            let outcome = match parse_record(line, None) {
                Ok(record) => map_record(&r.tables, &record, &meta, &mut mapped),
                Err(e) => Err(RecordError {
                    table: 0,
                    error: ColumnError {
                        column: "(record)".into(),
                        value: crate::util::clip(&line.escape_debug().to_string(), 80),
                        reason: format!("the record is not valid JSON ({e})"),
                    },
                }),
            };
            match outcome {
                Ok(()) => {
                    for (t, table_rows) in r.tables.iter().zip(&mapped.rows) {
                        rows.extend(table_rows.iter().map(|row| row_json(t, row)));
                    }
                }
                Err(RecordError { table, error }) => {
                    let bad = crate::load::BadRecord {
                        resource: name.clone(),
                        object: "(dry run)".into(),
                        record: n as u64 + 1,
                        table: r.tables[table].name.clone(),
                        column: error.column,
                        value: error.value,
                        reason: error.reason,
                    };
                    if r.tables[0].on_error == OnError::Fail {
                        return Err(crate::load::LoadError::Record(Box::new(bad)).into());
                    }
                    tracing::warn!(
                        "{}",
                        secrets.mask(&format!("{bad}; rejected (on_error: {})", r.tables[0].on_error.name()))
                    );
                }
            }
        }
        show(coverage_table(r, records.len(), &mapped.coverage, &rows[first_row..]));
        let sample = records.first().and_then(|l| serde_json::from_str::<Value>(l).ok());
        let problems = crate::load::record::unmatched(&r.tables, &mapped.coverage, sample.as_ref());
        if !problems.is_empty() {
            return Err(crate::load::LoadError::Unmatched {
                resource: name,
                problems,
            }
            .into());
        }
    }
    Ok(rows)
}

/// For `run --dry-run`: per column read from a path, how many rows it matched in and a
/// value it gave.
pub(super) fn coverage_table(
    r: &Resource,
    records: usize,
    coverage: &[crate::load::record::Coverage],
    rows: &[Value],
) -> String {
    use crate::spec::pipeline::ValueSource;
    let mut lines = vec![(
        "table".to_string(),
        "column".to_string(),
        "path".to_string(),
        "matched".to_string(),
        "sample".to_string(),
    )];
    for (t, cov) in r.tables.iter().zip(coverage) {
        for (c, hits) in t.columns.iter().zip(&cov.matched) {
            let path = match &c.value {
                ValueSource::Path(path) => path.as_str().to_string(),
                ValueSource::ParentRecord(path) => format!("parent {}", path.as_str()),
                _ => continue,
            };
            let sample = rows
                .iter()
                .filter(|row| row["_table"] == t.name.as_str())
                .map(|row| &row[c.name.as_str()])
                .find(|v| !v.is_null())
                .map(|v| crate::util::clip(&v.to_string(), 40))
                .unwrap_or_else(|| "(all null)".into());
            let mark = if *hits == 0 && cov.rows > 0 && !c.optional {
                "  ← matched nothing"
            } else {
                ""
            };
            lines.push((
                t.name.clone(),
                c.name.clone(),
                path,
                format!("{hits}/{}", cov.rows),
                format!("{sample}{mark}"),
            ));
        }
    }
    let w = |f: fn(&(String, String, String, String, String)) -> &String| {
        lines.iter().map(|l| f(l).chars().count()).max().unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (w(|l| &l.0), w(|l| &l.1), w(|l| &l.2), w(|l| &l.3));
    let mut out = format!("coverage of resource `{}` ({records} records fetched):\n", r.name);
    for (a, b, c, d, e) in &lines {
        out.push_str(&format!("  {a:<w0$}  {b:<w1$}  {c:<w2$}  {d:>w3$}  {e}\n"));
    }
    out
}
