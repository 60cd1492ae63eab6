//! `staging` and `warehouse`: where raw records go and where rows are loaded.

use super::{check_url, Ctx};
use crate::spec::interp::Interp;
use crate::spec::model::*;
use crate::spec::pipeline::{self as p, KeyTemplate, DEFAULT_KEY};

pub(super) fn compile_staging(cx: &mut Ctx, s: &RawStaging) -> Option<p::Staging> {
    let location = cx.interp("staging.location", &s.location);
    if let Some(loc) = location.as_ref().and_then(Interp::offline) {
        if let Err(e) = crate::spec::location::StagingLocation::parse(&loc) {
            cx.error("staging.location", e.message(&loc));
        }
    }
    let key = match KeyTemplate::parse(s.key.as_deref().unwrap_or(DEFAULT_KEY)) {
        Ok(k) => Some(k),
        Err(e) => {
            cx.error("staging.key", e);
            None
        }
    };
    let part_size = s.part_size.map(|b| b.0).unwrap_or(64 << 20);
    if part_size < 1024 {
        cx.error("staging.part_size", "part_size must be at least 1KiB");
    }
    let region = s.region.as_ref().and_then(|r| cx.interp("staging.region", r));
    let endpoint = s.endpoint.as_ref().and_then(|r| cx.interp("staging.endpoint", r));
    if let Some(t) = &endpoint {
        check_url(cx, "staging.endpoint", t);
    }
    Some(p::Staging {
        location: location?,
        key: key?,
        part_size,
        region,
        endpoint,
        path_style: s.path_style,
    })
}

pub(super) fn compile_warehouse(cx: &mut Ctx, w: &RawWarehouse) -> Option<p::Warehouse> {
    let url = cx.interp("warehouse.url", &w.url);
    if let Some(t) = &url {
        let raw = t.raw();
        let password = match url::Url::parse(raw) {
            Ok(u) => u.password().is_some(),
            // key/value form
            Err(_) => raw.split_whitespace().any(|w| w.trim_start().starts_with("password")),
        };
        if !t.has_vars() && password {
            cx.error(
                "warehouse.url",
                "a database URL with a password must come from the environment: write `${DATABASE_URL}`",
            );
        }
    }
    let schema_ok = cx.ident("warehouse.schema", &w.schema);
    if w.schema == "_sluice" {
        cx.error(
            "warehouse.schema",
            "`_sluice` is where sluice keeps its ledger; choose another schema",
        );
    }
    (schema_ok && url.is_some()).then(|| p::Warehouse {
        url: url.unwrap_or_else(|| unreachable!()),
        schema: w.schema.clone(),
    })
}
