//! One pipeline's HTTP side for a run: the client and resolved values every resource
//! shares, and the incremental request shaping — where an incremental resource starts,
//! sent as its parameter or body field.

use std::collections::HashMap;

use serde_json::Value;

use super::http::Client;
use super::{
    extract_children, extract_resource, first_request, ExtractError, Extracted, ParentRecords, RecordSink, Requests,
};
use crate::resolve::Resolved;
use crate::spec::pipeline::{CursorTo, Pipeline, Resource};
use crate::spec::placeholder::Values;
use crate::util::Secrets;

/// Where each incremental resource of `resources` starts, from the saved positions.
pub(crate) fn incremental_starts(
    resources: &[&Resource],
    saved: &std::collections::BTreeMap<String, crate::incremental::Position>,
) -> HashMap<String, crate::incremental::Position> {
    resources
        .iter()
        .filter_map(|r| {
            let inc = r.incremental.as_ref()?;
            Some((r.name.clone(), inc.start(saved.get(&r.name).copied())))
        })
        .collect()
}

/// One pipeline's HTTP side for one run: its client, base URL and resolved values, and
/// where each incremental resource starts.
pub(crate) struct Session {
    pub client: Client,
    pub base_url: String,
    pub source: crate::resolve::ResolvedSource,
    /// Where each incremental resource starts this run.
    pub starts: HashMap<String, crate::incremental::Position>,
}

impl Session {
    /// The session of `p` with its resolved values; no incremental start yet.
    pub(crate) fn new(p: &Pipeline, resolved: &Resolved, secrets: &Secrets) -> Result<Session, ExtractError> {
        let client = Client::new(p.source(), resolved.source(), secrets)?;
        let base_url = client.base_url().to_string();
        Ok(Session {
            client,
            base_url,
            source: resolved.source().clone(),
            starts: HashMap::new(),
        })
    }

    /// Extract resource `r` into `sink`, with this pipeline's client and resolved values.
    /// `parents`: the parent's records, for a `for_each` resource.
    pub(crate) async fn extract<S: RecordSink>(
        &self,
        p: &Pipeline,
        r: &Resource,
        parents: Option<ParentRecords<'_>>,
        sink: &mut S,
    ) -> Result<Extracted, ExtractError> {
        let (mut params, mut body) = (
            self.source.resource_params(&r.name).to_vec(),
            self.source.body(&r.name).cloned(),
        );
        // Where an incremental resource starts, sent as its parameter or body field.
        let start = match (&r.incremental, self.starts.get(&r.name)) {
            (Some(inc), Some(pos)) => {
                let value = inc.format.write(*pos);
                match &inc.send {
                    Some(CursorTo::Param(name)) => params.push((name.clone(), inc.format.text(*pos))),
                    Some(CursorTo::BodyField(field)) => {
                        crate::extract::paginate::set_field(body.get_or_insert(Value::Null), field, value.clone())
                    }
                    None => {}
                }
                Some(value)
            }
            _ => None,
        };
        let (params, body, start) = (params.as_slice(), body.as_ref(), start.as_ref());
        match parents {
            None => {
                let values = Values { parent: None, start };
                let first = first_request(&self.client, &self.base_url, r, params, body, &values)?;
                extract_resource(&self.client, p, r, first, sink).await
            }
            Some(parents) => {
                let base = Requests {
                    client: &self.client,
                    base_url: &self.base_url,
                    params,
                    body,
                    start,
                };
                extract_children(&base, p, r, parents, sink).await
            }
        }
    }
}
