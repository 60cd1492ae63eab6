//! `paginate`: the paginator kinds, their stop conditions and the completeness checks.

use super::{is_header_name, Ctx};
use crate::spec::jsonpath::JsonPath;
use crate::spec::model::*;
use crate::spec::pipeline::{self as p};

/// A paginator, its `stop_when` and what proves the resource complete.
type CompiledPaginate = (
    Option<p::Paginator>,
    Option<Option<p::StopWhen>>,
    Option<p::Completeness>,
);

/// A `{path, equals}` condition: a compiled path and a scalar.
fn compile_condition(cx: &mut Ctx, at: &str, s: &RawStopWhen) -> Option<(JsonPath, serde_json::Value)> {
    if !(s.equals.is_string() || s.equals.is_number() || s.equals.is_boolean() || s.equals.is_null()) {
        cx.error(
            &format!("{at}.equals"),
            "`equals` takes text, a number, a boolean or null",
        );
    }
    cx.jsonpath(&format!("{at}.path"), &s.path)
        .map(|path| (path, s.equals.clone()))
}

/// `total`, `total_pages`, `total_check` and `has_more`, common to every paginator.
fn compile_completeness(cx: &mut Ctx, ppath: &str, raw: &RawPaginate) -> Option<p::Completeness> {
    let (total, total_pages, total_check, has_more) = match raw {
        RawPaginate::None { total_check } => (None, None, *total_check, None),
        RawPaginate::NextUrl {
            total,
            total_check,
            has_more,
            ..
        }
        | RawPaginate::Offset {
            total,
            total_check,
            has_more,
            ..
        }
        | RawPaginate::Cursor {
            total,
            total_check,
            has_more,
            ..
        }
        | RawPaginate::LinkHeader {
            total,
            total_check,
            has_more,
            ..
        } => (total.as_ref(), None, *total_check, has_more.as_ref()),
        RawPaginate::PageNumber {
            total,
            total_pages,
            total_check,
            has_more,
            ..
        } => (total.as_ref(), total_pages.as_ref(), *total_check, has_more.as_ref()),
    };
    let mut path = |field: &str, text: Option<&String>| match text {
        Some(t) => cx.jsonpath(&format!("{ppath}.{field}"), t).map(Some),
        None => Some(None),
    };
    let total = path("total", total);
    let total_pages = path("total_pages", total_pages);
    let has_more = match has_more {
        None => Some(None),
        Some(RawHasMore::Path(text)) => cx
            .jsonpath(&format!("{ppath}.has_more"), text)
            .map(|path| Some(p::HasMore { path, equals: None })),
        Some(RawHasMore::When(w)) => compile_condition(cx, &format!("{ppath}.has_more"), w).map(|(path, equals)| {
            Some(p::HasMore {
                path,
                equals: Some(equals),
            })
        }),
    };
    Some(p::Completeness {
        total: total?,
        total_pages: total_pages?,
        total_check: total_check.unwrap_or_default(),
        has_more: has_more?,
    })
}

pub(super) fn compile_paginate(cx: &mut Ctx, ppath: &str, raw: Option<&RawPaginate>) -> CompiledPaginate {
    let none = RawPaginate::None { total_check: None };
    let raw = raw.unwrap_or(&none);
    let stop = match raw {
        RawPaginate::None { .. } => None,
        RawPaginate::NextUrl { stop_when, .. }
        | RawPaginate::PageNumber { stop_when, .. }
        | RawPaginate::Offset { stop_when, .. }
        | RawPaginate::Cursor { stop_when, .. }
        | RawPaginate::LinkHeader { stop_when, .. } => stop_when.as_ref(),
    };
    let stop_when = match stop {
        None => Some(None),
        Some(s) => compile_condition(cx, &format!("{ppath}.stop_when"), s)
            .map(|(path, equals)| Some(p::StopWhen { path, equals })),
    };
    let completeness = compile_completeness(cx, ppath, raw);
    let paginator = match raw {
        RawPaginate::None { .. } => Some(p::Paginator::None),
        RawPaginate::NextUrl { next, .. } => cx
            .jsonpath(&format!("{ppath}.next"), next)
            .map(|next| p::Paginator::NextUrl { next }),
        RawPaginate::PageNumber {
            param,
            start,
            total_pages,
            ..
        } => {
            let param = param.clone().unwrap_or_else(|| "page".into());
            if param.is_empty() {
                cx.error(&format!("{ppath}.param"), "the page parameter name cannot be empty");
            }
            completeness.as_ref().map(|c| p::Paginator::PageNumber {
                param,
                start: start.unwrap_or(1),
                total_pages: c.total_pages.clone().filter(|_| total_pages.is_some()),
            })
        }
        RawPaginate::Offset {
            limit_param,
            offset_param,
            limit,
            total,
            ..
        } => {
            if *limit == 0 {
                cx.error(&format!("{ppath}.limit"), "limit must be at least 1");
            }
            // The total that ends the paging is the one checked (compiled once, there).
            completeness.as_ref().map(|c| p::Paginator::Offset {
                limit_param: limit_param.clone().unwrap_or_else(|| "limit".into()),
                offset_param: offset_param.clone().unwrap_or_else(|| "offset".into()),
                limit: *limit,
                total: c.total.clone().filter(|_| total.is_some()),
            })
        }
        RawPaginate::Cursor {
            cursor,
            last_record,
            header,
            param,
            body_field,
            ..
        } => {
            let to = cursor_to(cx, ppath, param, body_field);
            let from = cursor_from(cx, ppath, cursor, last_record, header);
            from.zip(to).map(|(from, to)| p::Paginator::Cursor { from, to })
        }
        RawPaginate::LinkHeader { .. } => Some(p::Paginator::LinkHeader),
    };
    (paginator, stop_when, completeness)
}

/// Where a cursor goes back: a query parameter or a field of the JSON body.
fn cursor_to(cx: &mut Ctx, ppath: &str, param: &Option<String>, body_field: &Option<String>) -> Option<p::CursorTo> {
    match (param, body_field) {
        (Some(p), None) if !p.is_empty() => Some(p::CursorTo::Param(p.clone())),
        (None, Some(f)) if !f.is_empty() && f.split('.').all(|s| !s.is_empty()) => {
            Some(p::CursorTo::BodyField(f.split('.').map(String::from).collect()))
        }
        (Some(_), Some(_)) => {
            cx.error_at_key(
                &format!("{ppath}.body_field"),
                "a cursor is sent one way; give `param` or `body_field`, not both",
            );
            None
        }
        (None, None) => {
            cx.error(
                ppath,
                "a cursor paginator needs `param` (a query parameter) or `body_field` (a field of the JSON body)",
            );
            None
        }
        _ => {
            cx.error(
                &format!("{ppath}.{}", if param.is_some() { "param" } else { "body_field" }),
                "the name where the cursor goes cannot be empty",
            );
            None
        }
    }
}

/// Where a cursor comes from: a JSONPath on the body or on the last record, or a header.
fn cursor_from(
    cx: &mut Ctx,
    ppath: &str,
    cursor: &Option<String>,
    last_record: &Option<String>,
    header: &Option<String>,
) -> Option<p::CursorFrom> {
    let given: Vec<&str> = [
        cursor.as_ref().map(|_| "cursor"),
        last_record.as_ref().map(|_| "last_record"),
        header.as_ref().map(|_| "header"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match (cursor, last_record, header) {
        _ if given.len() > 1 => {
            cx.error_at_key(
                &format!("{ppath}.{}", given[1]),
                format!(
                    "a cursor comes from one place; give one of `cursor`, `last_record` and `header`, not both `{}` and `{}`",
                    given[0], given[1]
                ),
            );
            None
        }
        (Some(c), None, None) => cx.jsonpath(&format!("{ppath}.cursor"), c).map(p::CursorFrom::Body),
        (None, Some(l), None) => cx
            .jsonpath(&format!("{ppath}.last_record"), l)
            .map(p::CursorFrom::LastRecord),
        (None, None, Some(h)) => match is_header_name(h) {
            true => Some(p::CursorFrom::Header(h.to_ascii_lowercase())),
            false => {
                cx.error(&format!("{ppath}.header"), format!("`{h}` is not a valid header name"));
                None
            }
        },
        _ => {
            cx.error(
                ppath,
                "a cursor paginator needs where the token comes from: `cursor` (a JSONPath on the body), `last_record` (a JSONPath on the last record) or `header`",
            );
            None
        }
    }
}
