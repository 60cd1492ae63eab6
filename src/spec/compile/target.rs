//! Where a request goes: a resource's (or its job's) `path` or `url`, with the
//! placeholders it may use.

use super::{check_sources, Allowed, Ctx};
use crate::spec::pipeline as p;

/// `path` or `url` (of resource `name`, or of one of its job's requests), with the
/// placeholders only a `for_each`, incremental or job resource may use.
pub(super) fn compile_target(
    cx: &mut Ctx,
    path: &str,
    name: &str,
    rpath: Option<&String>,
    rurl: Option<&String>,
    allowed: Allowed,
) -> Option<p::Target> {
    use crate::spec::placeholder::{scan, Scan, Source};
    let any = allowed.parent || allowed.item || allowed.start || allowed.job;
    match (rpath, rurl) {
        (None, None) => {
            cx.error(
                path,
                format!("resource `{name}` needs a `path` below base_url (such as `/character`) or a `url`"),
            );
            None
        }
        (Some(_), Some(_)) => {
            cx.error_at_key(&format!("{path}.url"), "give `path` or `url`, not both");
            None
        }
        (Some(raw), None) => {
            let fpath = format!("{path}.path");
            // `${VAR}`s are resolved when the pipeline runs; the checks see them as `x`.
            let checked = cx.interp(&fpath, raw)?.resolve_with(|_| Some("x".into())).ok()?;
            let rp = &checked;
            if rp.contains(char::is_whitespace) || rp.contains("://") {
                cx.error(
                    &fpath,
                    format!("`{rp}` must be a path below base_url such as `/character`, without spaces; an absolute URL goes in `url`"),
                );
                return None;
            }
            let only_now = scan(rp, Scan::Strict)
                .is_ok_and(|f| !f.is_empty() && f.iter().all(|p| matches!(p.source, Source::Now(_) | Source::Job(_))));
            if !any && !only_now && rp.contains(['{', '}']) {
                cx.error(
                    &fpath,
                    format!("`{rp}`: braces would be sent as they are; placeholders need `for_each` (`{{parent.<field>}}`) or `incremental` (`{{incremental.start}}`)"),
                );
                return None;
            }
            match scan(rp, Scan::Strict) {
                Err(e) => {
                    cx.error(&fpath, format!("`{rp}`: {e}"));
                    None
                }
                Ok(found) => check_sources(cx, &fpath, &found, allowed).then(|| p::Target::Path(raw.clone())),
            }
        }
        (None, Some(raw)) => {
            let fpath = format!("{path}.url");
            let checked = cx.interp(&fpath, raw)?.resolve_with(|_| Some("x".into())).ok()?;
            let u = &checked;
            let found = match scan(u, Scan::Strict) {
                Ok(found) => found,
                Err(e) => {
                    cx.error(&fpath, format!("`{u}`: {e}"));
                    return None;
                }
            };
            if !check_sources(cx, &fpath, &found, allowed) {
                return None;
            }
            // A URL that starts with a placeholder is the parent's; any other must be an
            // absolute http(s) URL whatever the placeholders hold.
            if found.first().is_none_or(|p| p.start > 0) {
                let mut sample = u.clone();
                for p in found.iter().rev() {
                    sample.replace_range(p.start..p.end, "x");
                }
                let fine = url::Url::parse(&sample)
                    .is_ok_and(|x| matches!(x.scheme(), "http" | "https") && x.host().is_some());
                if !fine {
                    cx.error(
                        &fpath,
                        format!(
                            "`{u}` is not an absolute http:// or https:// URL; a path below base_url goes in `path`"
                        ),
                    );
                    return None;
                }
            }
            Some(p::Target::Url(raw.clone()))
        }
    }
}
