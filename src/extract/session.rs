//! One pipeline's HTTP side for a run: the client and resolved values every resource
//! shares, and the incremental request shaping — where an incremental resource starts,
//! sent as its parameter or body field.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::http::Client;
use super::{
    extract_children, extract_sequence, ExtractError, Extracted, ParentRecords, RecordSink, Requests, Windows,
};
use crate::incremental::Position;
use crate::resolve::Resolved;
use crate::spec::pipeline::{CursorTo, Pipeline, Resource};
use crate::spec::placeholder::Values;
use crate::util::Secrets;

/// Where each incremental resource of `resources` starts, from the saved positions (its
/// `initial` read from the environment when it is a `${VAR}`).
pub(crate) fn incremental_starts(
    resources: &[&Resource],
    saved: &std::collections::BTreeMap<String, Position>,
) -> Result<HashMap<String, Position>, ExtractError> {
    let mut out = HashMap::new();
    for r in resources {
        let Some(inc) = r.incremental.as_ref() else { continue };
        let initial = inc
            .position(&inc.initial, crate::resolve::var)
            .map_err(|e| ExtractError::Config(format!("resource `{}`: `incremental.initial`: {e}", r.name)))?;
        out.insert(r.name.clone(), inc.start(saved.get(&r.name).copied(), initial));
    }
    Ok(out)
}

/// One pipeline's HTTP side for one run: its client, base URL and resolved values, and
/// where each incremental resource starts.
pub(crate) struct Session {
    pub client: Client,
    pub base_url: String,
    pub source: crate::resolve::ResolvedSource,
    /// Where each incremental resource starts this run.
    pub starts: HashMap<String, Position>,
    /// Where these resources end (inclusive), instead of their `incremental.end`.
    pub ends: HashMap<String, Position>,
    /// The run's time: `{now}`, and the end of a range without `end`.
    pub now: DateTime<Utc>,
    /// Read only the first date window of each stepped resource (`run` commits each
    /// window before it reads the next).
    pub one_window: bool,
    /// Where each resource a checkpoint stopped goes on.
    pub resume: HashMap<String, crate::stage::checkpoint::At>,
}

impl Session {
    /// The session of `p` with its resolved values; no incremental start yet.
    pub(crate) fn new(p: &Pipeline, resolved: &Resolved, secrets: &Secrets) -> Result<Session, ExtractError> {
        let client = Client::new(p.source(), resolved.source(), secrets)?.with_rules(p);
        let base_url = client.base_url().to_string();
        Ok(Session {
            client,
            base_url,
            source: resolved.source().clone(),
            starts: HashMap::new(),
            ends: HashMap::new(),
            now: Utc::now(),
            one_window: false,
            resume: HashMap::new(),
        })
    }

    /// Extract resource `r` into `sink`, with this pipeline's client and resolved values:
    /// an incremental resource read as date windows window by window, in order.
    /// `parents`: the parent's records, for a `for_each` resource.
    pub(crate) async fn extract<S: RecordSink>(
        &self,
        p: &Pipeline,
        r: &Resource,
        parents: Option<ParentRecords<'_>>,
        sink: &mut S,
    ) -> Result<Extracted, ExtractError> {
        // A list partition: its values stand for the parent records.
        let mut parents = match (parents, self.source.partitions.get(&r.name)) {
            (None, Some(values)) if values.is_empty() => {
                return Err(ExtractError::Config(format!(
                    "resource `{}`: `for_each.values` is empty, so the resource would make no request",
                    r.name
                )))
            }
            (None, Some(values)) => {
                let values = values.clone().into_iter().map(|v| Ok(Value::String(v)));
                Some(Box::pin(futures_util::stream::iter(values)) as ParentRecords<'_>)
            }
            (parents, _) => parents,
        };
        let windowed = r.incremental.as_ref().filter(|i| i.windowed);
        let resume = self.resume.get(&r.name);
        let (Some(inc), Some(&start)) = (windowed, self.starts.get(&r.name)) else {
            let start = self.starts.get(&r.name).copied();
            return self
                .extract_window(p, r, parents, start.map(|s| (s, None)), resume, sink)
                .await;
        };
        let config = |e: String| ExtractError::Config(format!("resource `{}`: `incremental.end`: {e}", r.name));
        let end = match self.ends.get(&r.name) {
            Some(end) => Some(*end),
            None => inc.end_position(crate::resolve::var).map_err(config)?,
        };
        let all = inc.windows(start, end, self.now);
        let settled = crate::incremental::settled(&inc.format, self.now);
        // Going on from a checkpoint: from the window it stopped in.
        let first = resume.map_or(0, |at| at.window as usize);
        let take = if self.one_window { first + 1 } else { all.len() };
        let mut total = Extracted {
            windows: Some(Windows::default()),
            ..Default::default()
        };
        if all.is_empty() {
            tracing::info!(resource = %r.name, start = %inc.format.text(start), "no date window to read: the start is past the end");
        }
        for (i, &(a, b)) in all.iter().enumerate().take(take).skip(first) {
            let last = b - inc.granularity;
            sink.at(super::Place::Window(i as u32, &total));
            let resume = resume.filter(|_| i == first);
            let stats = self
                .extract_window(p, r, parents.take(), Some((a, Some(last))), resume, sink)
                .await?;
            tracing::info!(
                resource = %r.name,
                window = format!("{} of {}", i + 1, all.len()),
                start = %inc.format.text(a),
                end = %inc.format.text(last),
                pages = stats.pages,
                records = stats.records,
                "date window read"
            );
            let stopped = stats.stopped;
            total.add(&stats);
            total.windows = Some(Windows {
                done: i as u32 + 1,
                left: (all.len() - i - 1) as u32,
                state: Some(b.min(settled).max(a)),
            });
            if stopped {
                break;
            }
        }
        Ok(total)
    }

    /// One request sequence of `r` (with its pagination; per parent for `for_each`), from
    /// `window`'s start (and to its end).
    async fn extract_window<S: RecordSink>(
        &self,
        p: &Pipeline,
        r: &Resource,
        parents: Option<ParentRecords<'_>>,
        window: Option<(Position, Option<Position>)>,
        resume: Option<&crate::stage::checkpoint::At>,
        sink: &mut S,
    ) -> Result<Extracted, ExtractError> {
        let (mut params, mut body) = (
            self.source.resource_params(&r.name).to_vec(),
            self.source.body(&r.name).cloned(),
        );
        // Where an incremental resource starts (and ends), sent as its parameters or body field.
        let (start, end) = match (&r.incremental, window) {
            (Some(inc), Some((a, b))) => {
                match &inc.send {
                    Some(CursorTo::Param(name)) => params.push((name.clone(), inc.format.text(a))),
                    Some(CursorTo::BodyField(field)) => {
                        crate::extract::paginate::set_field(body.get_or_insert(Value::Null), field, inc.format.write(a))
                    }
                    None => {}
                }
                if let (Some(name), Some(b)) = (&inc.send_end, b) {
                    params.push((name.clone(), inc.format.text(b)));
                }
                (Some(inc.format.write(a)), b.map(|b| inc.format.write(b)))
            }
            _ => (None, None),
        };
        let (params, body) = (params.as_slice(), body.as_ref());
        let (start, end) = (start.as_ref(), end.as_ref());
        let base = Requests {
            client: &self.client,
            base_url: &self.base_url,
            params,
            headers: self.source.resource_headers(&r.name),
            body,
            target: self.source.target(r),
            job: self.source.jobs.get(&r.name),
            start,
            end,
            now: self.now,
            resume,
        };
        match parents {
            None => {
                let values = Values {
                    parent: None,
                    start,
                    end,
                    now: Some(self.now),
                    job: None,
                };
                extract_sequence(&base, p, r, &values, sink).await
            }
            Some(parents) => extract_children(&base, p, r, parents, sink).await,
        }
    }
}
