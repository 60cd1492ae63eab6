//! sluice on AWS. [`Plan`] is the one description of what a deployment creates — the
//! staging bucket and, per pipeline, an extract and a load function, the state machine
//! that drives them ([`workflow`]) and its schedule — from which `sluice deploy aws`
//! writes the CloudFormation template ([`template`]) and `sluice diagram` labels the
//! architecture page. [`lambda`] is the handler every function runs, [`logs`] what it
//! writes (log lines, metrics); [`package`] builds the zip they run from, [`elf`] checks
//! its bootstrap.

pub(crate) mod elf;
pub(crate) mod lambda;
pub(crate) mod logs;
pub(crate) mod package;
pub(crate) mod template;
pub(crate) mod workflow;

use crate::spec::Pipeline;

// The function environment: what the template sets and the bootstrap reads.
/// The environment variable telling a function which pipeline it serves.
pub(crate) const PIPELINE_VAR: &str = "SLUICE_PIPELINE";
/// The environment variable telling a function which step it is (`extract`, `load`).
pub(crate) const FUNCTION_VAR: &str = "SLUICE_FUNCTION";
/// The variable naming the secrets to read at cold start (comma-separated ARNs or names).
pub(crate) const SECRETS_VAR: &str = "SLUICE_SECRETS";

/// The folder of a pipeline's staged runs that holds their manifests; a manifest landing
/// there is what triggers the load.
pub(crate) const MANIFESTS: &str = "_manifests";

/// The staging prefix in the bucket when the template's parameter is left alone.
pub(crate) const DEFAULT_PREFIX: &str = "sluice";

/// One of the two functions a deployment creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Function {
    /// The template's logical id.
    pub logical_id: &'static str,
    /// The step it runs (`extract` or `load`).
    pub step: &'static str,
    /// What starts it, for the diagram.
    pub started_by: &'static str,
}

/// The function the schedules start: API → staging, then the manifest.
pub(crate) const EXTRACT: Function = Function {
    logical_id: "ExtractFunction",
    step: "extract",
    started_by: "schedule",
};

/// The function a landed manifest starts: staging → warehouse.
pub(crate) const LOAD: Function = Function {
    logical_id: "LoadFunction",
    step: "load",
    started_by: "its state machine",
};

/// The staging bucket's logical id (when the stack creates it).
pub(crate) const BUCKET: &str = "StagingBucket";

/// Where a deployment's secrets come from: Secrets Manager secrets (each a JSON object of
/// environment variables, or an RDS secret), listed by this template parameter.
pub(crate) const SECRET_PARAMETER: &str = "SecretArns";

/// What a deployment creates for one pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    pub name: String,
    /// The pipeline's part of logical ids (`Rickandmorty`).
    pub id: String,
    /// `runtime.schedule`, when the spec has one.
    pub schedule: Option<String>,
    /// The variable `staging.location` is read from; the functions set it to the bucket.
    pub staging_var: String,
    /// Whether extraction reads the warehouse (incremental state), so it needs the VPC too.
    pub extract_reads_warehouse: bool,
    /// `runtime`'s sizes for the functions.
    pub memory_mib: Option<u64>,
    pub timeout_s: Option<u64>,
    pub ephemeral_mib: Option<u64>,
    /// The extract function's reserved concurrency.
    pub concurrency: u32,
    /// Every other variable the spec reads, with whether it must be set: these come from
    /// the secret (or keep their defaults).
    pub variables: Vec<(String, bool)>,
}

impl Deployed {
    /// The logical id of this pipeline's function `f` (`CoincapExtractFunction`); its
    /// role, log group and alarm are named after it.
    pub(crate) fn function_id(&self, f: &Function) -> String {
        format!("{}{}", self.id, f.logical_id)
    }

    /// The logical id of the schedule rule, when there is a schedule.
    pub(crate) fn schedule_rule(&self) -> Option<String> {
        self.schedule.as_ref().map(|_| format!("{}Schedule", self.id))
    }

    /// The logical id of the state machine that runs the pipeline's steps.
    pub(crate) fn state_machine_id(&self) -> String {
        format!("{}StateMachine", self.id)
    }
}

/// Everything one `sluice deploy aws` creates.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub pipelines: Vec<Deployed>,
    /// The package the functions run, when `--package` named it: its file name is the
    /// default `CodeKey`, its bootstrap's architecture the default `Architecture`.
    pub package: Option<(String, &'static str)>,
}

impl Plan {
    /// Every variable of every spec that the secret may hold, with whether one must be
    /// set; a variable required by one spec is required.
    pub(crate) fn variables(&self) -> Vec<(String, bool)> {
        let mut all: Vec<(String, bool)> = Vec::new();
        for p in &self.pipelines {
            for (v, must) in &p.variables {
                match all.iter_mut().find(|(a, _)| a == v) {
                    Some((_, m)) => *m |= must,
                    None => all.push((v.clone(), *must)),
                }
            }
        }
        all
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    #[error("{file}: `staging.location: {location}` must be one variable reference (`${{SLUICE_STAGING:-file://.sluice/staging}}`, say) so that the deployment can point it at the staging bucket")]
    FixedStaging { file: String, location: String },
    #[error("{file} and {other} both define pipeline `{name}`; a deployment runs each pipeline once")]
    Duplicate { file: String, other: String, name: String },
    #[error("pipelines `{a}` and `{b}` would both be named `{id}` in the template (its names keep only letters and digits); rename one")]
    SameId { a: String, b: String, id: String },
    #[error("{file}: `staging.key: {key}` must begin with `{{pipeline}}/`, so that each pipeline's functions may touch only their own pipeline's objects")]
    KeyOutsidePipeline { file: String, key: String },
    #[error("no spec given")]
    Empty,
}

/// The deployment of one pipeline.
pub(crate) fn deployed(p: &Pipeline) -> Result<Deployed, PlanError> {
    let location = &p.staging().location;
    let staging_var = location.sole_var().ok_or_else(|| PlanError::FixedStaging {
        file: p.file().to_string(),
        location: location.raw().to_string(),
    })?;
    let key = p.staging().key.raw();
    if !key.starts_with("{pipeline}/") {
        return Err(PlanError::KeyOutsidePipeline {
            file: p.file().to_string(),
            key: key.to_string(),
        });
    }
    let runtime = p.runtime();
    Ok(Deployed {
        name: p.name().to_string(),
        id: logical_part(p.name()),
        schedule: runtime.and_then(|r| r.schedule.clone()),
        staging_var: staging_var.to_string(),
        extract_reads_warehouse: p.resources().iter().any(|r| r.incremental.is_some()),
        memory_mib: runtime.and_then(|r| r.memory_mib),
        timeout_s: runtime.and_then(|r| r.timeout_s),
        ephemeral_mib: runtime.and_then(|r| r.ephemeral_mib),
        concurrency: runtime.and_then(|r| r.concurrency).unwrap_or(1),
        variables: crate::resolve::variables(p)
            .into_iter()
            .filter(|(v, _)| v != staging_var)
            .collect(),
    })
}

/// The deployment of several pipelines.
pub(crate) fn plan(pipelines: &[Pipeline]) -> Result<Plan, PlanError> {
    if pipelines.is_empty() {
        return Err(PlanError::Empty);
    }
    for (i, p) in pipelines.iter().enumerate() {
        if let Some(q) = pipelines[..i].iter().find(|q| q.name() == p.name()) {
            return Err(PlanError::Duplicate {
                file: q.file().to_string(),
                other: p.file().to_string(),
                name: p.name().to_string(),
            });
        }
    }
    let deployed: Vec<Deployed> = pipelines.iter().map(deployed).collect::<Result<_, _>>()?;
    for (i, d) in deployed.iter().enumerate() {
        if let Some(other) = deployed[..i].iter().find(|o| o.id == d.id) {
            return Err(PlanError::SameId {
                a: other.name.clone(),
                b: d.name.clone(),
                id: d.id.clone(),
            });
        }
    }
    Ok(Plan {
        pipelines: deployed,
        package: None,
    })
}

/// `rick_and-morty` → `RickAndMorty`: letters and digits only, as logical ids want.
fn logical_part(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'P');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_ids_are_alphanumeric() {
        assert_eq!(logical_part("rickandmorty"), "Rickandmorty");
        assert_eq!(logical_part("rick_and-morty"), "RickAndMorty");
        assert_eq!(logical_part("9lives"), "P9lives");
    }

    #[test]
    fn pipelines_that_would_share_template_names_are_refused() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/coincap.yaml")).unwrap();
        let named = |name: &str| {
            crate::spec::compile_text(
                &format!("{name}.yaml"),
                &text.replace("name: coincap\n", &format!("name: {name}\n")),
            )
            .unwrap()
        };
        let e = plan(&[named("coin-cap"), named("coin_cap")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipelines `coin-cap` and `coin_cap` would both be named `CoinCap` in the template (its names keep only letters and digits); rename one"
        );
        assert_eq!(plan(&[named("coin-cap"), named("coincap")]).unwrap().pipelines.len(), 2);
    }
}
