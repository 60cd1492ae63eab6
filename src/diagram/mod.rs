//! Diagrams of pipelines: an architecture page (API → extract → staging → load →
//! PostgreSQL → analytics, one lane per spec) and an ER page of the tables. A pure
//! function of the compiled specs: the layout is computed into one model, which the
//! draw.io and SVG writers both render, so every format shows the same picture and the
//! same specs always give the same bytes.

pub(crate) mod drawio;
pub(crate) mod layout;
pub(crate) mod svg;
pub(crate) mod text;

pub use text::{label_width, label_width_styled, text_width, text_width_styled, LINE};

/// What a vertex is, which decides how each writer draws it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A lane holding one pipeline; its title runs down its left edge.
    Lane,
    /// A free text (titles, notes).
    Text { size: u32, bold: bool },
    /// A rounded box (neutral steps and the API).
    Box { role: Role },
    /// An AWS icon (`mxgraph.aws4.*`) with its label below.
    Aws { icon: AwsIcon },
    /// A database cylinder (PostgreSQL when not on AWS).
    Cylinder { role: Role },
    /// A list of lines in a plain box (tables of a schema, legend entries).
    Note { role: Role },
    /// An ER entity: header with the table name, one row per column below.
    Entity,
    /// One column row of an entity.
    Row { key: bool },
    /// A colour swatch of the legend.
    Swatch { role: Role },
}

/// The role of a node, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Compute,
    Storage,
    Database,
    Schedule,
    Analytics,
    Neutral,
}

impl Role {
    /// (fill, stroke) colours.
    pub fn colours(self) -> (&'static str, &'static str) {
        match self {
            Role::Source => ("#E6E6E6", "#666666"),
            Role::Compute => ("#FFE6CC", "#ED7100"),
            Role::Storage => ("#E9F5D6", "#7AA116"),
            Role::Database => ("#F5E0F7", "#C925D1"),
            Role::Schedule => ("#FCE1EE", "#E7157B"),
            Role::Analytics => ("#EDE4FF", "#8C4FFF"),
            Role::Neutral => ("#FFFFFF", "#666666"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsIcon {
    Lambda,
    S3,
    Rds,
    EventBridge,
    QuickSight,
}

impl AwsIcon {
    pub fn res_icon(self) -> &'static str {
        match self {
            AwsIcon::Lambda => "mxgraph.aws4.lambda",
            AwsIcon::S3 => "mxgraph.aws4.s3",
            AwsIcon::Rds => "mxgraph.aws4.rds",
            AwsIcon::EventBridge => "mxgraph.aws4.eventbridge",
            AwsIcon::QuickSight => "mxgraph.aws4.quicksight",
        }
    }
    pub fn role(self) -> Role {
        match self {
            AwsIcon::Lambda => Role::Compute,
            AwsIcon::S3 => Role::Storage,
            AwsIcon::Rds => Role::Database,
            AwsIcon::EventBridge => Role::Schedule,
            AwsIcon::QuickSight => Role::Analytics,
        }
    }
    /// The short name drawn on the icon in SVG.
    pub fn short(self) -> &'static str {
        match self {
            AwsIcon::Lambda => "λ",
            AwsIcon::S3 => "S3",
            AwsIcon::Rds => "RDS",
            AwsIcon::EventBridge => "EB",
            AwsIcon::QuickSight => "QS",
        }
    }
}

/// Where a vertex's label is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelAt {
    Inside,
    Above,
    Right,
}

#[derive(Debug, Clone)]
pub struct Vertex {
    pub id: String,
    /// The containing vertex; geometry is relative to it.
    pub parent: Option<String>,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub label: Vec<String>,
    pub shape: Shape,
    pub label_at: LabelAt,
    /// Shown on hover in draw.io: where the thing comes from (column lineage, request).
    pub tooltip: Option<String>,
    /// A draw.io link, such as `data:page/id,tables` (another page of the file).
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// Data flowing left to right.
    Flow,
    /// A schedule triggering a step.
    Trigger,
    /// A foreign key: many (source) to one (target).
    Relation,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
    pub label: Vec<String>,
    pub kind: EdgeKind,
    /// The path, absolute, from where it leaves the source to where it enters the target
    /// (empty: the writer routes it).
    pub route: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub id: String,
    pub name: String,
    pub width: f64,
    pub height: f64,
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
}

impl Page {
    pub fn vertex(&self, id: &str) -> Option<&Vertex> {
        self.vertices.iter().find(|v| v.id == id)
    }

    /// Absolute position of a vertex (its parents' offsets added).
    pub fn absolute(&self, v: &Vertex) -> (f64, f64) {
        let (mut x, mut y) = (v.x, v.y);
        let mut parent = v.parent.as_deref();
        while let Some(p) = parent.and_then(|id| self.vertex(id)) {
            x += p.x;
            y += p.y;
            parent = p.parent.as_deref();
        }
        (x, y)
    }

    /// The area a vertex takes, labels drawn outside it (below AWS icons) included.
    pub fn footprint(&self, v: &Vertex) -> (f64, f64, f64, f64) {
        let (x, y) = self.absolute(v);
        let lw = label_width(&v.label, 12.0);
        let lh = v.label.len() as f64 * LINE;
        match v.label_at {
            LabelAt::Inside => (x, y, v.w, v.h),
            LabelAt::Above => {
                let w = lw.max(v.w);
                (x + v.w / 2.0 - w / 2.0, y - 4.0 - lh, w, v.h + 4.0 + lh)
            }
            LabelAt::Right => (x, y.min(y + v.h / 2.0 - lh / 2.0), v.w + 6.0 + lw, v.h.max(lh)),
        }
    }
}

/// Which pages to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    Pipeline,
    Tables,
    All,
}

#[derive(Debug, Clone)]
pub struct Diagram {
    pub pages: Vec<Page>,
}

/// Text for XML (element text or a quoted attribute): markup characters escaped, line
/// breaks written as `newline`, and the control characters XML 1.0 cannot hold at all
/// (not even as references) shown as their Unicode pictures (U+0001 → `␁`).
pub(crate) fn xml_text(s: &str, newline: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str(newline),
            '\t' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Build the diagram of a set of specs.
pub fn build(pipelines: &[crate::spec::Pipeline], pages: Pages) -> Diagram {
    let mut out = Vec::new();
    if pages != Pages::Tables {
        out.push(layout::pipeline_page(pipelines));
    }
    if pages != Pages::Pipeline {
        out.push(layout::tables_page(pipelines));
    }
    Diagram { pages: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_pipelines() -> Vec<crate::spec::Pipeline> {
        ["rickandmorty", "coincap"]
            .iter()
            .map(|n| {
                let path = format!("{}/pipelines/{n}.yaml", env!("CARGO_MANIFEST_DIR"));
                crate::spec::compile_text(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
            })
            .collect()
    }

    fn overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }

    #[test]
    fn nothing_overlaps_and_everything_is_on_the_page() {
        let d = build(&reference_pipelines(), Pages::All);
        for page in &d.pages {
            for (i, a) in page.vertices.iter().enumerate() {
                let fa = page.footprint(a);
                assert!(
                    fa.0 >= 0.0 && fa.1 >= 0.0 && fa.0 + fa.2 <= page.width && fa.1 + fa.3 <= page.height,
                    "{} is off the page",
                    a.id
                );
                for b in &page.vertices[i + 1..] {
                    if a.parent == b.parent {
                        assert!(
                            !overlap(fa, page.footprint(b)),
                            "{} overlaps {} on page {}",
                            a.id,
                            b.id,
                            page.name
                        );
                    }
                }
                if let Some(parent) = a.parent.as_deref().and_then(|p| page.vertex(p)) {
                    let (px, py) = page.absolute(parent);
                    assert!(
                        fa.0 >= px
                            && fa.1 >= py
                            && fa.0 + fa.2 <= px + parent.w + 0.01
                            && fa.1 + fa.3 <= py + parent.h + 0.01,
                        "{} sticks out of {}",
                        a.id,
                        parent.id
                    );
                }
            }
        }
    }

    #[test]
    fn every_label_fits_its_shape() {
        let d = build(&reference_pipelines(), Pages::All);
        for page in &d.pages {
            for v in &page.vertices {
                let size = match v.shape {
                    Shape::Text { size, .. } => size as f64,
                    Shape::Entity => 13.0,
                    _ => 12.0,
                };
                if v.label_at == LabelAt::Inside && !matches!(v.shape, Shape::Lane) {
                    let bold = matches!(
                        v.shape,
                        Shape::Row { key: true } | Shape::Entity | Shape::Text { bold: true, .. }
                    );
                    let w = label_width_styled(&v.label, size, bold);
                    assert!(
                        w + 8.0 <= v.w,
                        "label of {} is {w:.0}px wide in a {:.0}px shape",
                        v.id,
                        v.w
                    );
                    assert!(
                        v.label.len() as f64 * LINE <= v.h + 0.01 || matches!(v.shape, Shape::Text { .. }),
                        "label of {} is too tall",
                        v.id
                    );
                }
            }
        }
    }
}
