//! Computed layout: positions and labels of every vertex and edge. No manual positions,
//! no randomness: the same specs give the same model. One file per page:
//! `architecture` (one lane per pipeline) and `er` (the tables and their relations); this
//! file holds the measures and vertex builders both use.

mod architecture;
mod er;

pub(crate) use architecture::pipeline_page;
pub(crate) use er::tables_page;

use super::text::{label_width, label_width_styled};
use super::{AwsIcon, LabelAt, Shape, Vertex, LINE};

pub(super) const MARGIN: f64 = 40.0;
pub(super) const LANE_TITLE: f64 = 30.0;
/// The least gap between two steps of a lane; wider when the edge label between them is.
pub(super) const MIN_GAP: f64 = 50.0;
/// Edge labels: their font size, and the room kept on each side of one.
pub(super) const EDGE_FONT: f64 = 11.0;
pub(super) const EDGE_PAD: f64 = 14.0;
pub(super) const ICON: f64 = 60.0;
pub(super) const ROW_Y: f64 = 110.0;

pub(super) fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn text(
    id: String,
    x: f64,
    y: f64,
    lines: Vec<String>,
    size: u32,
    bold: bool,
    parent: Option<String>,
) -> Vertex {
    let w = (label_width_styled(&lines, size as f64, bold) + 12.0).ceil();
    let h = lines.len() as f64 * (size as f64 * 1.3) + 8.0;
    Vertex {
        id,
        parent,
        x,
        y,
        w,
        h,
        label: lines,
        shape: Shape::Text { size, bold },
        label_at: LabelAt::Inside,
        tooltip: None,
        link: None,
    }
}

pub(super) fn boxed(
    id: String,
    cx: f64,
    cy: f64,
    lines: Vec<String>,
    shape: Shape,
    parent: &str,
    min_w: f64,
) -> Vertex {
    let w = (label_width(&lines, 12.0) + 24.0).max(min_w).ceil();
    let h = (lines.len() as f64 * LINE + 20.0).ceil();
    Vertex {
        id,
        parent: Some(parent.to_string()),
        x: cx - w / 2.0,
        y: cy - h / 2.0,
        w,
        h,
        label: lines,
        shape,
        label_at: LabelAt::Inside,
        tooltip: None,
        link: None,
    }
}

pub(super) fn icon(id: String, cx: f64, cy: f64, label: Vec<String>, icon: AwsIcon, parent: &str) -> Vertex {
    // Labels go above the icons: below them run the trigger arrows and the table list.
    let label_at = if icon == AwsIcon::EventBridge {
        LabelAt::Right
    } else {
        LabelAt::Above
    };
    Vertex {
        id,
        parent: Some(parent.to_string()),
        x: cx - ICON / 2.0,
        y: cy - ICON / 2.0,
        w: ICON,
        h: ICON,
        label,
        shape: Shape::Aws { icon },
        label_at,
        tooltip: None,
        link: None,
    }
}

/// A resource's request, records and pagination, for tooltips.
pub(super) fn request_of(r: &crate::spec::pipeline::Resource) -> String {
    let parent = r
        .for_each
        .as_ref()
        .map(|f| format!(" for each `{}` record", f.parent))
        .unwrap_or_default();
    let request = match &r.job {
        Some(job) => format!(
            "export job: {} {}, polled at {}",
            crate::extract::http::method_name(job.create.method),
            job.create.target.as_str(),
            job.poll.target.as_str()
        ),
        None => format!("{} {}", crate::extract::http::method_name(r.method), r.target.as_str()),
    };
    let format = match r.format.streamed() {
        true => format!("{} bodies; ", r.format.name()),
        false => String::new(),
    };
    format!(
        "resource {}: {request}{parent}; {format}records {}; {}",
        r.name,
        r.records.as_str(),
        r.paginator.describe()
    )
}
