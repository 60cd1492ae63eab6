//! The one step that reads the environment: a compiled [`Pipeline`] plus the process
//! environment become the values the steps run with, or the full list of what is missing.
//! Every value read from the environment for a credential, a header or a query parameter
//! is registered as a secret here, once, so that no message shows it.
//!
//! On AWS Lambda the environment has a second layer: the variables a function read from
//! Secrets Manager ([`set_overlay`], renewed as the secrets rotate), every one of them a
//! secret.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use crate::spec::interp::Interp;
use crate::spec::pipeline::{ApiKeyLocation, Auth, Pipeline};
use crate::util::Secrets;

/// Variables that stand in front of the process environment (see [`set_overlay`]).
static OVERLAY: RwLock<Option<HashMap<String, String>>> = RwLock::new(None);

/// Put `values` in front of the process environment for every later resolve, each value
/// a secret, in place of the ones set before (a Lambda function reads its secrets again
/// as they rotate). True when they differ from those.
pub(crate) fn set_overlay(values: HashMap<String, String>) -> bool {
    let mut overlay = OVERLAY.write().unwrap_or_else(|e| e.into_inner());
    let changed = overlay.as_ref() != Some(&values);
    *overlay = Some(values);
    changed
}

/// An environment variable as the steps see it: the overlay first, then the process.
/// The flag says it came from the overlay (a secret, whatever field reads it).
fn lookup(name: &str) -> Option<(String, bool)> {
    let overlay = OVERLAY.read().unwrap_or_else(|e| e.into_inner());
    match overlay.as_ref().and_then(|o| o.get(name)) {
        Some(v) => Some((v.clone(), true)),
        None => std::env::var(name).ok().map(|v| (v, false)),
    }
}

/// An environment variable as the steps see it: the overlay first, then the process.
pub(crate) fn var(name: &str) -> Option<String> {
    lookup(name).map(|(v, _)| v)
}

/// Which parts of a pipeline a step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    /// The API (extract).
    pub source: bool,
    /// The staging location (extract writes it, load reads it).
    pub staging: bool,
    /// The warehouse (load).
    pub warehouse: bool,
}

impl Needs {
    pub(crate) const EXTRACT: Needs = Needs {
        source: true,
        staging: true,
        warehouse: false,
    };
    pub(crate) const LOAD: Needs = Needs {
        source: false,
        staging: true,
        warehouse: true,
    };
    pub(crate) const RUN: Needs = Needs {
        source: true,
        staging: true,
        warehouse: true,
    };
    /// A dry run reads the API only.
    pub(crate) const DRY_RUN: Needs = Needs {
        source: true,
        staging: false,
        warehouse: false,
    };
    /// `state` reads the warehouse only.
    pub(crate) const WAREHOUSE: Needs = Needs {
        source: false,
        staging: false,
        warehouse: true,
    };
    /// `gc` works on staging only.
    pub(crate) const STAGING: Needs = Needs {
        source: false,
        staging: true,
        warehouse: false,
    };
}

/// What the steps run with: every interpolated value of the spec, resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    pub source: Option<ResolvedSource>,
    pub staging: Option<ResolvedStaging>,
    pub warehouse_url: Option<String>,
}

impl Resolved {
    /// The resolved source; only for steps that said they need it.
    pub(crate) fn source(&self) -> &ResolvedSource {
        self.source.as_ref().expect("resolved with Needs::source")
    }
    pub(crate) fn staging(&self) -> &ResolvedStaging {
        self.staging.as_ref().expect("resolved with Needs::staging")
    }
    pub(crate) fn warehouse_url(&self) -> &str {
        self.warehouse_url.as_deref().expect("resolved with Needs::warehouse")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ResolvedSource {
    pub base_url: String,
    pub headers: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
    pub auth: ResolvedAuth,
    /// Per resource, its own query parameters.
    pub resource_params: BTreeMap<String, Vec<(String, String)>>,
    /// Per resource with headers of its own, those (a `${VAR:-}` left unset left out).
    pub resource_headers: BTreeMap<String, Vec<(String, String)>>,
    /// Per resource with a request body, the body with its strings resolved.
    pub bodies: BTreeMap<String, serde_json::Value>,
    /// Per resource whose `path` or `url` has a `${VAR}`, the resolved one.
    pub targets: BTreeMap<String, crate::spec::pipeline::Target>,
    /// Per resource with `for_each: {values}`, the values.
    pub partitions: BTreeMap<String, Vec<String>>,
    /// Per resource with a `job`, its requests resolved.
    pub jobs: BTreeMap<String, ResolvedJob>,
}

/// A job's requests with their `${VAR}`s resolved (placeholders are filled per request).
#[derive(Debug, Clone)]
pub(crate) struct ResolvedJob {
    pub create: ResolvedCall,
    pub poll: ResolvedCall,
    /// `download.path`, resolved.
    pub download: Option<crate::spec::pipeline::Target>,
}

/// One request of a job, resolved.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedCall {
    pub method: crate::spec::pipeline::HttpMethod,
    pub target: crate::spec::pipeline::Target,
    pub params: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
}

impl ResolvedSource {
    pub(crate) fn resource_params(&self, resource: &str) -> &[(String, String)] {
        self.resource_params.get(resource).map(Vec::as_slice).unwrap_or(&[])
    }
    pub(crate) fn resource_headers(&self, resource: &str) -> &[(String, String)] {
        self.resource_headers.get(resource).map(Vec::as_slice).unwrap_or(&[])
    }
    pub(crate) fn body(&self, resource: &str) -> Option<&serde_json::Value> {
        self.bodies.get(resource)
    }
    /// Where `r`'s requests go, its `${VAR}`s resolved.
    pub(crate) fn target<'a>(&'a self, r: &'a crate::spec::pipeline::Resource) -> &'a crate::spec::pipeline::Target {
        self.targets.get(&r.name).unwrap_or(&r.target)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ResolvedAuth {
    None,
    Bearer {
        token: String,
    },
    ApiKey {
        name: String,
        value: String,
        location: ApiKeyLocation,
    },
    Basic {
        username: String,
        password: String,
    },
    OAuth2 {
        grant: crate::spec::pipeline::OAuth2Grant,
        token_url: String,
        client_id: String,
        client_secret: String,
        refresh_token: Option<String>,
        scopes: Vec<String>,
        username: Option<String>,
        password: Option<String>,
        extra: Vec<(String, String)>,
        body_format: crate::spec::pipeline::BodyFormat,
    },
    Session(Box<ResolvedLogin>),
}

/// A session login, resolved.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedLogin {
    pub method: crate::spec::pipeline::HttpMethod,
    pub url: String,
    pub body: Option<serde_json::Value>,
    pub body_format: crate::spec::pipeline::BodyFormat,
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub token: crate::spec::jsonpath::JsonPath,
    pub header_name: String,
    pub header_value: String,
    pub expires: crate::spec::pipeline::Expiry,
}

#[derive(Debug, Clone, Default)]
pub struct ResolvedStaging {
    pub location: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

/// Environment variables a step needs and the environment lacks, each with the fields
/// that read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} not set: {}; set {}, or give a default in the spec as `${{NAME:-default}}`",
    if missing.len() == 1 { "an environment variable this step needs is" } else { "environment variables this step needs are" },
    missing.iter().map(|(var, fields)| format!("`{var}` (for {})", fields.join(", "))).collect::<Vec<_>>().join(", "),
    if missing.len() == 1 { "it" } else { "them" })]
pub(crate) struct EnvError {
    /// Variable → the fields that read it, in spec order.
    pub missing: Vec<(String, Vec<String>)>,
}

/// Collects resolved values and missing variables.
struct Resolver<'a> {
    secrets: &'a Secrets,
    /// Where variables come from: [`lookup`], or a recorder (see [`variables`]).
    lookup: &'a dyn Fn(&str) -> Option<(String, bool)>,
    missing: Vec<(String, Vec<String>)>,
}

impl Resolver<'_> {
    fn get(&mut self, field: &str, t: &Interp, secret: bool) -> String {
        let (secrets, lookup) = (self.secrets, self.lookup);
        let resolved = t.resolve_with(|name| {
            let (value, overlaid) = lookup(name)?;
            if secret || overlaid {
                secrets.add(&value);
            }
            Some(value)
        });
        match resolved {
            Ok(v) => v,
            Err(_) => {
                // Every missing variable of the template, not just the first.
                for name in t.missing(|n| lookup(n).map(|(v, _)| v)) {
                    match self.missing.iter_mut().find(|(v, _)| v == name) {
                        Some((_, fields)) => fields.push(field.to_string()),
                        None => self.missing.push((name.to_string(), vec![field.to_string()])),
                    }
                }
                String::new()
            }
        }
    }

    /// A request body with every string resolved as a template.
    fn body(&mut self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match body {
            Value::String(s) => match Interp::parse(s) {
                Ok(t) => Value::String(self.get(path, &t, true)),
                Err(_) => body.clone(),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.body(&format!("{path}[{i}]"), v))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.body(&format!("{path}.{k}"), v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The source's auth with its secrets resolved.
    fn auth(&mut self, auth: &Auth) -> ResolvedAuth {
        match auth {
            Auth::None => ResolvedAuth::None,
            Auth::Bearer { token } => ResolvedAuth::Bearer {
                token: self.get("source.auth.token", token, true),
            },
            Auth::ApiKey { name, value, location } => ResolvedAuth::ApiKey {
                name: name.clone(),
                value: self.get("source.auth.value", value, true),
                location: *location,
            },
            Auth::Basic { username, password } => ResolvedAuth::Basic {
                username: self.get("source.auth.username", username, false),
                password: self.get("source.auth.password", password, true),
            },
            Auth::OAuth2 {
                grant,
                token_url,
                client_id,
                client_secret,
                refresh_token,
                scopes,
                username,
                password,
                extra,
                body_format,
            } => ResolvedAuth::OAuth2 {
                grant: *grant,
                token_url: self.get("source.auth.token_url", token_url, false),
                client_id: self.get("source.auth.client_id", client_id, false),
                client_secret: self.get("source.auth.client_secret", client_secret, true),
                refresh_token: refresh_token
                    .as_ref()
                    .map(|t| self.get("source.auth.refresh_token", t, true)),
                scopes: scopes.clone(),
                username: username.as_ref().map(|t| self.get("source.auth.username", t, false)),
                password: password.as_ref().map(|t| self.get("source.auth.password", t, true)),
                extra: self.pairs("source.auth.extra", extra),
                body_format: *body_format,
            },
            Auth::Session(login) => ResolvedAuth::Session(Box::new(ResolvedLogin {
                method: login.method,
                url: self.get("source.auth.login.url", &login.url, false),
                body: login.body.as_ref().map(|b| self.body("source.auth.login.body", b)),
                body_format: login.body_format,
                params: self.pairs("source.auth.login.params", &login.params),
                headers: self.pairs("source.auth.login.headers", &login.headers),
                token: login.token.clone(),
                header_name: login.header_name.clone(),
                header_value: login.header_value.clone(),
                expires: login.expires.clone(),
            })),
        }
    }

    /// Headers, resolved: one whose `${VAR:-}` resolved to nothing is left out, not sent
    /// empty.
    fn headers(&mut self, path: &str, list: &[(String, Interp)]) -> Vec<(String, String)> {
        let resolved = self.pairs(path, list);
        list.iter()
            .zip(resolved)
            .filter(|((_, t), (_, v))| !(v.is_empty() && t.has_vars()))
            .map(|(_, kv)| kv)
            .collect()
    }

    /// A target with its `${VAR}`s resolved.
    fn target(&mut self, field: &str, t: &crate::spec::pipeline::Target) -> crate::spec::pipeline::Target {
        use crate::spec::pipeline::Target;
        let Some(i) = Interp::parse(t.as_str()).ok().filter(Interp::has_vars) else {
            return t.clone();
        };
        let text = self.get(field, &i, false);
        match t {
            Target::Path(_) => Target::Path(text),
            Target::Url(_) => Target::Url(text),
        }
    }

    fn call(&mut self, path: &str, c: &crate::spec::pipeline::JobCall) -> ResolvedCall {
        ResolvedCall {
            method: c.method,
            target: self.target(&format!("{path}.{}", c.target.field()), &c.target),
            params: self.pairs(&format!("{path}.params"), &c.params),
            body: c.body.as_ref().map(|b| self.body(&format!("{path}.body"), b)),
        }
    }

    fn pairs(&mut self, path: &str, list: &[(String, Interp)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.clone(), self.get(&format!("{path}.{k}"), v, true)))
            .collect()
    }
}

/// Resolve what a step `needs` from the environment, or report every missing variable.
pub(crate) fn resolve(p: &Pipeline, needs: Needs, secrets: &Secrets) -> Result<Resolved, EnvError> {
    resolve_from(p, needs, secrets, &lookup)
}

/// Every environment variable a spec reads, in spec order, each with whether it must be
/// set (it has no `:-default`).
pub(crate) fn variables(p: &Pipeline) -> Vec<(String, bool)> {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let record = |name: &str| {
        let mut seen = seen.borrow_mut();
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
        }
        None
    };
    let required = match resolve_from(p, Needs::RUN, &Secrets::default(), &record) {
        Err(e) => e.missing.into_iter().map(|(v, _)| v).collect(),
        Ok(_) => Vec::new(),
    };
    seen.into_inner()
        .into_iter()
        .map(|v| {
            let must = required.contains(&v);
            (v, must)
        })
        .collect()
}

/// The environment variables the source (the API side) reads, in spec order, each with
/// whether it is a secret: a field reads it as one, or only `source.auth` reads it (the
/// user name of a basic auth may be the API key). Then those of the incremental bounds
/// (`initial`, `end`), which are not.
pub(crate) fn source_variables(p: &Pipeline) -> Vec<(String, bool)> {
    let mut without_auth = p.clone();
    without_auth.source.auth = crate::spec::pipeline::Auth::None;
    let outside: Vec<String> = variables_read(&without_auth).into_iter().map(|(v, _)| v).collect();
    let mut read: Vec<(String, bool)> = variables_read(p)
        .into_iter()
        .map(|(v, secret)| {
            let only_auth = !outside.contains(&v);
            (v, secret || only_auth)
        })
        .collect();
    for inc in p.resources().iter().filter_map(|r| r.incremental.as_ref()) {
        for bound in std::iter::once(&inc.initial).chain(&inc.end) {
            if let crate::spec::pipeline::Bound::Env(t) = bound {
                for v in t.vars() {
                    if !read.iter().any(|(r, _)| r == v) {
                        read.push((v.to_string(), false));
                    }
                }
            }
        }
    }
    read
}

fn variables_read(p: &Pipeline) -> Vec<(String, bool)> {
    let marker = |name: &str| format!("sluice-variable-{name}-marker");
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let record = |name: &str| {
        let mut seen = seen.borrow_mut();
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
        }
        Some((marker(name), false))
    };
    let secrets = Secrets::default();
    let source = Needs {
        source: true,
        staging: false,
        warehouse: false,
    };
    let _ = resolve_from(p, source, &secrets, &record);
    seen.into_inner()
        .into_iter()
        .map(|v| {
            let secret = secrets.any_holds(&marker(&v));
            (v, secret)
        })
        .collect()
}

fn resolve_from(
    p: &Pipeline,
    needs: Needs,
    secrets: &Secrets,
    lookup: &dyn Fn(&str) -> Option<(String, bool)>,
) -> Result<Resolved, EnvError> {
    let mut r = Resolver {
        secrets,
        lookup,
        missing: Vec::new(),
    };
    let source = needs.source.then(|| {
        let s = p.source();
        let auth = r.auth(&s.auth);
        ResolvedSource {
            base_url: r.get("source.base_url", &s.base_url, false),
            headers: r.headers("source.headers", &s.headers),
            params: r.pairs("source.params", &s.params),
            auth,
            resource_params: p
                .resources()
                .iter()
                .map(|res| {
                    (
                        res.name.clone(),
                        r.pairs(&format!("resources.{}.params", res.name), &res.params),
                    )
                })
                .collect(),
            resource_headers: p
                .resources()
                .iter()
                .filter(|res| !res.headers.is_empty())
                .map(|res| {
                    let headers = r.headers(&format!("resources.{}.headers", res.name), &res.headers);
                    (res.name.clone(), headers)
                })
                .collect(),
            bodies: p
                .resources()
                .iter()
                .filter_map(|res| {
                    let body = res.body.as_ref()?;
                    Some((res.name.clone(), r.body(&format!("resources.{}.body", res.name), body)))
                })
                .collect(),
            targets: p
                .resources()
                .iter()
                .filter(|res| res.job.is_none() && Interp::parse(res.target.as_str()).is_ok_and(|t| t.has_vars()))
                .map(|res| {
                    let field = format!("resources.{}.{}", res.name, res.target.field());
                    (res.name.clone(), r.target(&field, &res.target))
                })
                .collect(),
            jobs: p
                .resources()
                .iter()
                .filter_map(|res| {
                    let job = res.job.as_ref()?;
                    let path = format!("resources.{}.job", res.name);
                    let resolved = ResolvedJob {
                        create: r.call(&format!("{path}.create"), &job.create),
                        poll: r.call(&format!("{path}.poll"), &job.poll),
                        download: match &job.download {
                            crate::spec::pipeline::Download::Target(t) => {
                                Some(r.target(&format!("{path}.download.path"), t))
                            }
                            crate::spec::pipeline::Download::Url(_) => None,
                        },
                    };
                    Some((res.name.clone(), resolved))
                })
                .collect(),
            partitions: p
                .resources()
                .iter()
                .filter_map(|res| {
                    let values = res.partitions.as_ref()?;
                    let field = format!("resources.{}.for_each.values", res.name);
                    let mut out: Vec<String> = values.iter().map(|v| r.get(&field, v, false)).collect();
                    if res.partitions_split {
                        out = out
                            .iter()
                            .flat_map(|t| t.split(','))
                            .map(|v| v.trim().to_string())
                            .filter(|v| !v.is_empty())
                            .collect();
                    }
                    Some((res.name.clone(), out))
                })
                .collect(),
        }
    });
    let st = p.staging();
    let staging = needs.staging.then(|| ResolvedStaging {
        location: r.get("staging.location", &st.location, false),
        region: st.region.as_ref().map(|t| r.get("staging.region", t, false)),
        endpoint: st.endpoint.as_ref().map(|t| r.get("staging.endpoint", t, false)),
    });
    let warehouse_url = needs
        .warehouse
        .then(|| r.get("warehouse.url", &p.warehouse().url, false));
    if let Some(url) = &warehouse_url {
        if let Ok(u) = url::Url::parse(url) {
            if let Some(pw) = u.password() {
                secrets.add(pw);
            }
        }
    }
    if !r.missing.is_empty() {
        return Err(EnvError { missing: r.missing });
    }
    Ok(Resolved {
        source,
        staging,
        warehouse_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_variable_is_reported_at_once_with_its_fields() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/coincap.yaml")).unwrap();
        // Names no test environment sets.
        let text = text.replace("${COINCAP_TOKEN}", "${SLUICE_TEST_UNSET_KEY}").replace(
            "${DATABASE_URL:-sqlite://.sluice/coincap.db}",
            "${SLUICE_TEST_UNSET_DB}",
        );
        let q = crate::spec::compile_text("coincap.yaml", &text).unwrap();
        let e = resolve(&q, Needs::RUN, &Secrets::default()).unwrap_err();
        let vars: Vec<&str> = e.missing.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(vars, ["SLUICE_TEST_UNSET_KEY", "SLUICE_TEST_UNSET_DB"]);
        assert!(e.to_string().starts_with(
            "environment variables this step needs are not set: `SLUICE_TEST_UNSET_KEY` (for source.auth.token), `SLUICE_TEST_UNSET_DB` (for warehouse.url)"
        ));
        // Extraction does not need the warehouse.
        let e = resolve(&q, Needs::EXTRACT, &Secrets::default()).unwrap_err();
        assert_eq!(e.missing.len(), 1);
    }
}
