//! Computed layout: positions and labels of every vertex and edge. No manual positions,
//! no randomness: the same specs give the same model.

use std::collections::HashMap;

use super::{label_width, label_width_styled, AwsIcon, Edge, EdgeKind, LabelAt, Page, Role, Shape, Vertex, LINE};
use crate::spec::location::{StagingLocation, WarehouseKind};
use crate::spec::pipeline::{Pipeline, RuntimeTarget, Table, WriteMode, RUN_ID_COLUMN};

const MARGIN: f64 = 40.0;
const LANE_TITLE: f64 = 30.0;
/// The least gap between two steps of a lane; wider when the edge label between them is.
const MIN_GAP: f64 = 50.0;
/// Edge labels: their font size, and the room kept on each side of one.
const EDGE_FONT: f64 = 11.0;
const EDGE_PAD: f64 = 14.0;
const ICON: f64 = 60.0;
const ROW_Y: f64 = 110.0;

/// The longest word a label keeps whole (an SQL identifier has at most 63 characters);
/// the layout makes room for it.
const WHOLE_WORD: usize = 64;

/// Split text into lines of at most `max` characters: at spaces, else at slashes. A
/// longer word stays whole up to [`WHOLE_WORD`] characters, and is cut beyond.
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_inclusive([' ', ',']) {
        let pieces: Vec<&str> = if word.chars().count() > max {
            word.split_inclusive('/').collect()
        } else {
            vec![word]
        };
        for piece in pieces {
            if cur.chars().count() + piece.trim_end().chars().count() > max && !cur.trim().is_empty() {
                lines.push(cur.trim_end().to_string());
                cur.clear();
            }
            // A line does not start with the space that ended the one before.
            cur.push_str(if cur.is_empty() { piece.trim_start() } else { piece });
        }
    }
    if !cur.trim().is_empty() {
        lines.push(cur.trim_end().to_string());
    }
    // A piece longer than a whole word may be is cut.
    lines
        .into_iter()
        .flat_map(|l| {
            let chars: Vec<char> = l.chars().collect();
            chars
                .chunks(max.max(WHOLE_WORD))
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Keep at most `n` lines, the last one ending in `…` when some were left out.
fn shorten(lines: &mut Vec<String>, n: usize) {
    if lines.len() > n {
        lines.truncate(n);
        if let Some(last) = lines.last_mut() {
            last.push_str(" …");
        }
    }
}

fn id_part(s: &str) -> String {
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

fn text(id: String, x: f64, y: f64, lines: Vec<String>, size: u32, bold: bool, parent: Option<String>) -> Vertex {
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

fn boxed(id: String, cx: f64, cy: f64, lines: Vec<String>, shape: Shape, parent: &str, min_w: f64) -> Vertex {
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

fn icon(id: String, cx: f64, cy: f64, label: Vec<String>, icon: AwsIcon, parent: &str) -> Vertex {
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

fn host_of(p: &Pipeline) -> String {
    let url = p
        .source()
        .base_url
        .offline()
        .unwrap_or_else(|| p.source().base_url.raw().to_string());
    url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{h}{}", u.path().trim_end_matches('/'))))
        .unwrap_or(url)
}

/// How a staging location reads in a diagram (never a secret: locations hold none).
fn staging_label(p: &Pipeline) -> Vec<String> {
    let loc = &p.staging().location;
    let shown = match (loc.has_vars(), loc.offline()) {
        (false, _) => loc.raw().to_string(),
        (true, Some(default)) => {
            let var = loc
                .raw()
                .trim_start_matches("${")
                .split([':', '}'])
                .next()
                .unwrap_or("")
                .to_string();
            format!("${var} (default {default})")
        }
        (true, None) => loc.raw().to_string(),
    };
    wrap(&shown, 30)
}

fn on_aws(p: &Pipeline) -> bool {
    p.runtime().is_some_and(|r| r.target == RuntimeTarget::AwsLambda)
}

/// The column of a lane's vertex, from its id: the six steps of the row, the schedule under
/// extract, the table list under the database.
fn column_of(id: &str) -> Option<usize> {
    let suffix = id.rsplit('-').next()?;
    Some(match suffix {
        "source" => 0,
        "extract" | "schedule" => 1,
        "staging" => 2,
        "load" => 3,
        "db" | "tables" => 4,
        "analytics" => 5,
        _ => return None,
    })
}

/// How wide a vertex is drawn, its label outside it (above an icon) included.
fn drawn_width(v: &Vertex) -> f64 {
    match v.label_at {
        LabelAt::Above => v.w.max(label_width(&v.label, 12.0)),
        _ => v.w,
    }
}

/// Place every lane's columns: each as wide as its widest step in any lane, each gap as
/// wide as the widest edge label crossing it (`gaps`), so that no label covers a box.
/// Returns the lanes' common width.
fn place_columns(lanes: &mut [(Vertex, Vec<Vertex>)], gaps: &[f64; 5]) -> f64 {
    let mut widths = [0.0f64; 6];
    for (_, children) in lanes.iter() {
        for v in children
            .iter()
            .filter(|v| !v.id.ends_with("-tables") && !v.id.ends_with("-schedule"))
        {
            if let Some(c) = column_of(&v.id) {
                widths[c] = widths[c].max(drawn_width(v));
            }
        }
    }
    let mut centres = [0.0f64; 6];
    centres[0] = LANE_TITLE + 30.0 + widths[0] / 2.0;
    for i in 1..6 {
        centres[i] = centres[i - 1] + widths[i - 1] / 2.0 + gaps[i - 1] + widths[i] / 2.0;
    }
    let mut lane_w = centres[5] + widths[5] / 2.0 + 30.0;
    for (_, children) in lanes.iter_mut() {
        for v in children.iter_mut() {
            if let Some(c) = column_of(&v.id) {
                v.x = (centres[c] - v.w / 2.0).round();
            }
            let right = match v.label_at {
                LabelAt::Right => v.x + v.w + 6.0 + label_width(&v.label, 12.0),
                _ => v.x + drawn_width(v) / 2.0 + v.w / 2.0,
            };
            lane_w = lane_w.max(right + 20.0);
        }
    }
    lane_w.ceil()
}

/// The architecture page: one lane per pipeline.
pub fn pipeline_page(pipelines: &[Pipeline]) -> Page {
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    let names: Vec<&str> = pipelines.iter().map(|p| p.name()).collect();
    let title = text(
        "title".into(),
        MARGIN,
        12.0,
        vec![format!("sluice pipelines: {}", names.join(", "))],
        20,
        true,
        None,
    );
    let mut y = title.y + title.h + 16.0;
    vertices.push(title);
    // Lanes are laid out twice: first their contents (x still 0), then, once every lane's
    // boxes and edge labels are measured, the columns they share.
    let mut lanes: Vec<(Vertex, Vec<Vertex>)> = Vec::new();
    let mut gaps = [MIN_GAP; 5];
    for p in pipelines {
        let n = id_part(p.name());
        let lane_id = format!("{n}-lane");
        let aws = on_aws(p);
        // On AWS, what `sluice deploy aws` creates, named as its template names it.
        let deployed = aws.then(|| crate::aws::deployed(p).ok()).flatten();
        let function_label = |f: &crate::aws::Function| match &deployed {
            Some(d) => vec![f.step.to_string(), format!("λ {}", d.function_id(f))],
            None => vec![f.step.to_string(), "AWS Lambda".into()],
        };
        // Columns are placed later ([`place_columns`], by [`column_of`] the vertex id):
        // everything starts centred on x = 0.
        let cy = ROW_Y + ICON / 2.0 + 10.0;
        let mut lane_children = Vec::new();
        let subtitle = match p.description() {
            Some(d) => format!("{}: {d}", p.name()),
            None => p.name().to_string(),
        };
        let runtime = match p.runtime() {
            Some(r) if r.target == RuntimeTarget::AwsLambda => {
                format!(
                    "runs on AWS Lambda{}",
                    r.region.as_deref().map(|r| format!(" in {r}")).unwrap_or_default()
                )
            }
            _ => "runs with `sluice run`".to_string(),
        };
        lane_children.push(text(
            format!("{n}-subtitle"),
            LANE_TITLE + 10.0,
            8.0,
            vec![format!("{subtitle} — {runtime}")],
            13,
            true,
            Some(lane_id.clone()),
        ));

        let source = boxed(
            format!("{n}-source"),
            0.0,
            cy,
            vec![
                "REST API".into(),
                host_of(p),
                format!("auth: {}", p.source().auth.kind()),
            ],
            Shape::Box { role: Role::Source },
            &lane_id,
            170.0,
        );
        let source = Vertex {
            tooltip: Some(p.resources().iter().map(request_of).collect::<Vec<_>>().join("\n")),
            ..source
        };
        let extract = if aws {
            icon(
                format!("{n}-extract"),
                0.0,
                cy,
                function_label(&crate::aws::EXTRACT),
                AwsIcon::Lambda,
                &lane_id,
            )
        } else {
            boxed(
                format!("{n}-extract"),
                0.0,
                cy,
                vec!["extract".into(), "sluice extract".into()],
                Shape::Box { role: Role::Compute },
                &lane_id,
                140.0,
            )
        };
        let loc_offline = p.staging().location.offline().unwrap_or_default();
        let staging = if aws || StagingLocation::is_s3(&loc_offline) {
            let label = match &deployed {
                // The deployment points the spec's staging variable at its bucket.
                Some(d) => vec![
                    format!("staging: S3 {}", crate::aws::BUCKET),
                    format!("{}/ (${})", crate::aws::DEFAULT_PREFIX, d.staging_var),
                ],
                None => {
                    let mut label = vec!["staging (S3)".to_string()];
                    label.extend(staging_label(p));
                    label
                }
            };
            icon(format!("{n}-staging"), 0.0, cy, label, AwsIcon::S3, &lane_id)
        } else {
            let mut label = vec!["staging folder".to_string()];
            label.extend(staging_label(p));
            // A folder by default, which the variable can turn into S3.
            if let Some(var) = p.staging().location.sole_var() {
                label.push(format!("(S3 when ${var} is s3://…)"));
            }
            boxed(
                format!("{n}-staging"),
                0.0,
                cy,
                label,
                Shape::Box { role: Role::Storage },
                &lane_id,
                140.0,
            )
        };
        let load = if aws {
            icon(
                format!("{n}-load"),
                0.0,
                cy,
                function_label(&crate::aws::LOAD),
                AwsIcon::Lambda,
                &lane_id,
            )
        } else {
            boxed(
                format!("{n}-load"),
                0.0,
                cy,
                vec!["load".into(), "sluice load".into()],
                Shape::Box { role: Role::Compute },
                &lane_id,
                140.0,
            )
        };
        let schema = &p.warehouse().schema;
        let db = if aws {
            icon(
                format!("{n}-db"),
                0.0,
                cy,
                vec!["PostgreSQL (RDS)".into(), format!("schema {schema}")],
                AwsIcon::Rds,
                &lane_id,
            )
        } else {
            boxed(
                format!("{n}-db"),
                0.0,
                cy,
                warehouse_lines(p),
                Shape::Cylinder { role: Role::Database },
                &lane_id,
                140.0,
            )
        };
        let analytics = boxed(
            format!("{n}-analytics"),
            0.0,
            cy,
            vec!["analytics".into(), "SQL, BI, notebooks".into()],
            Shape::Box { role: Role::Analytics },
            &lane_id,
            150.0,
        );
        // The schema's tables, under the database.
        let mut table_lines = vec![format!("tables in {schema}:")];
        for t in p.tables() {
            let key = if t.primary_key.is_empty() {
                String::new()
            } else {
                format!(", key {}", t.primary_key.join("+"))
            };
            table_lines.push(format!("{} ({}{key})", t.name, t.write.name()));
        }
        let tables_w = (label_width(&table_lines, 12.0) + 24.0).max(150.0).ceil();
        let tables_h = (table_lines.len() as f64 * LINE + 20.0).ceil();
        let tables = Vertex {
            id: format!("{n}-tables"),
            parent: Some(lane_id.clone()),
            x: -tables_w / 2.0,
            y: cy + ICON / 2.0 + 40.0,
            w: tables_w,
            h: tables_h,
            label: table_lines,
            shape: Shape::Note { role: Role::Database },
            label_at: LabelAt::Inside,
            tooltip: Some("the Tables page shows their columns and where each comes from".into()),
            link: Some("data:page/id,tables".into()),
        };
        let mut bottom = tables.y + tables.h;

        // Edge labels say what flows.
        let paths: Vec<String> = p.resources().iter().map(|r| r.target.as_str().to_string()).collect();
        let mut get = wrap(&format!("GET {}", paths.join(" ")), 26);
        shorten(&mut get, 3);
        let paginators: Vec<String> = p.resources().iter().map(|r| r.paginator.describe()).collect();
        let same = paginators.windows(2).all(|w| w[0] == w[1]);
        get.push(if same {
            paginators[0].clone()
        } else {
            "paginated per resource".into()
        });
        let mut key = vec!["gzip JSON Lines".to_string()];
        let mut prefix = wrap(&p.staging().key.prefix_for(p.name()), 26);
        shorten(&mut prefix, 3);
        key.extend(prefix);
        let mut modes: Vec<String> = Vec::new();
        for mode in [WriteMode::Merge, WriteMode::Append, WriteMode::Replace] {
            let names: Vec<&str> = p
                .tables()
                .filter(|t| t.write == mode)
                .map(|t| t.name.as_str())
                .collect();
            if !names.is_empty() {
                modes.extend(wrap(&format!("{}: {}", mode.name(), names.join(", ")), 26));
            }
        }
        shorten(&mut modes, 3);
        let how = if !aws && sqlite_file(p).is_some() {
            "inserts"
        } else {
            "binary COPY"
        };
        let mut load_label = vec![format!("{how}, 1 transaction")];
        load_label.extend(modes);
        let flows = [
            (&source, &extract, get),
            (&extract, &staging, key),
            (
                &staging,
                &load,
                match &deployed {
                    Some(d) => vec!["manifest lands:".to_string(), d.manifest_rule()],
                    None => vec!["objects + manifest".to_string()],
                },
            ),
            (&load, &db, load_label),
            (&db, &analytics, vec!["SQL".to_string()]),
        ];
        for (i, (from, to, label)) in flows.into_iter().enumerate() {
            gaps[i] = gaps[i].max(label_width(&label, EDGE_FONT) + 2.0 * EDGE_PAD);
            edges.push(Edge {
                id: format!("{n}-flow-{i}"),
                source: from.id.clone(),
                target: to.id.clone(),
                label,
                kind: EdgeKind::Flow,
                route: Vec::new(),
            });
        }
        if let Some(schedule) = p.runtime().and_then(|r| r.schedule.clone()) {
            let sched_cy = tables.y + 40.0;
            let s = if aws {
                icon(
                    format!("{n}-schedule"),
                    0.0,
                    sched_cy,
                    vec![
                        deployed
                            .as_ref()
                            .and_then(|d| d.schedule_rule())
                            .unwrap_or_else(|| "schedule (EventBridge)".into()),
                        schedule,
                    ],
                    AwsIcon::EventBridge,
                    &lane_id,
                )
            } else {
                boxed(
                    format!("{n}-schedule"),
                    0.0,
                    sched_cy,
                    vec!["schedule".into(), schedule],
                    Shape::Box { role: Role::Schedule },
                    &lane_id,
                    140.0,
                )
            };
            bottom = bottom.max(s.y + s.h);
            edges.push(Edge {
                id: format!("{n}-trigger"),
                source: s.id.clone(),
                target: extract.id.clone(),
                label: Vec::new(),
                kind: EdgeKind::Trigger,
                route: Vec::new(),
            });
            lane_children.push(s);
        }
        lane_children.extend([source, extract, staging, load, db, analytics, tables]);
        let lane_h = (bottom + 24.0).ceil();
        let lane = Vertex {
            id: lane_id,
            parent: None,
            x: MARGIN,
            y,
            w: 0.0,
            h: lane_h,
            label: vec![p.name().to_string()],
            shape: Shape::Lane,
            label_at: LabelAt::Inside,
            tooltip: None,
            link: None,
        };
        lanes.push((lane, lane_children));
        y += lane_h + 24.0;
    }
    let lane_w = place_columns(&mut lanes, &gaps);
    for (mut lane, children) in lanes {
        lane.w = lane_w;
        vertices.push(lane);
        vertices.extend(children);
    }
    // The legend.
    let legend_title = text("legend-title".into(), MARGIN, y, vec!["Legend".into()], 14, true, None);
    y += legend_title.h + 4.0;
    vertices.push(legend_title);
    let entries = [
        (Role::Source, "source API"),
        (Role::Compute, "step: extract / load (AWS Lambda on AWS)"),
        (Role::Storage, "raw staging (S3 bucket or folder)"),
        (Role::Database, "warehouse (PostgreSQL / Amazon RDS / SQLite)"),
        (Role::Schedule, "schedule (Amazon EventBridge)"),
        (Role::Analytics, "analytics consumers"),
    ];
    let mut x = MARGIN;
    for (i, (role, label)) in entries.iter().enumerate() {
        let lines = vec![label.to_string()];
        let w = (label_width(&lines, 12.0) + 24.0).ceil();
        if x + w > MARGIN + lane_w {
            x = MARGIN;
            y += 40.0;
        }
        vertices.push(Vertex {
            id: format!("legend-{i}"),
            parent: None,
            x,
            y,
            w,
            h: 30.0,
            label: lines,
            shape: Shape::Swatch { role: *role },
            label_at: LabelAt::Inside,
            tooltip: None,
            link: None,
        });
        x += w + 12.0;
    }
    y += 40.0;
    let note = text(
        "legend-note".into(),
        MARGIN,
        y,
        vec!["Solid arrows: data flow, labelled with what moves. Dashed arrows: a schedule starting a step. AWS icons where the spec says runtime.target: aws_lambda.".into()],
        12,
        false,
        None,
    );
    y += note.h;
    vertices.push(note);
    Page {
        id: "pipeline".into(),
        name: "Pipeline".into(),
        width: (MARGIN * 2.0 + lane_w).ceil(),
        height: (y + MARGIN).ceil(),
        vertices,
        edges,
    }
}

const ENTITY_HEADER: f64 = 30.0;
const ROW_H: f64 = 24.0;
const COLUMN_GAP: f64 = 150.0;
/// The spacing of the corridors above the tables (relations that pass other columns).
const CORRIDOR: f64 = 8.0;

/// Order each column's tables by the rows that reference them from the next column, so
/// that relations run as straight as they can and cross as little as they can.
fn order_columns(columns: &mut [Vec<&Table>]) {
    for c in (0..columns.len().saturating_sub(1)).rev() {
        let (left, right) = columns.split_at_mut(c + 1);
        let next = &right[0];
        let key = |t: &Table| {
            next.iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    r.columns
                        .iter()
                        .enumerate()
                        .filter(|(_, col)| col.references.as_ref().is_some_and(|x| x.table == t.name))
                        .map(move |(j, _)| (i, j))
                })
                .min()
                .unwrap_or((usize::MAX, 0))
        };
        left[c].sort_by_key(|t| key(t));
    }
}

/// One end of a relation: its column and row.
#[derive(Debug, Clone, Copy)]
struct End {
    col: usize,
    y: f64,
}

/// Orthogonal routes for one schema's relations: each leaves its foreign-key row on the
/// left, runs along a track of its own in the gap between the columns, and enters the
/// key row on the right; one that passes other columns goes along a corridor above the
/// tables. The order of the tracks in each gap is the one with the fewest crossings.
fn route_relations(
    edges: &mut [Edge],
    rows_at: &HashMap<String, (usize, f64)>,
    bounds: &[(f64, f64)],
    corridor_top: f64,
) {
    let end_of = |id: &str| rows_at.get(id).map(|&(col, y)| End { col, y });
    let mut ends: Vec<(usize, End, End)> = Vec::new();
    for (i, e) in edges.iter().enumerate().filter(|(_, e)| e.kind == EdgeKind::Relation) {
        if let (Some(s), Some(t)) = (end_of(&e.source), end_of(&e.target)) {
            ends.push((i, s, t));
        }
    }
    // Several relations into one key row enter it a few pixels apart.
    let mut into: HashMap<(usize, i64), usize> = HashMap::new();
    for (_, _, t) in &ends {
        *into.entry((t.col, t.y as i64)).or_default() += 1;
    }
    let mut seen: HashMap<(usize, i64), usize> = HashMap::new();
    for (_, _, t) in ends.iter_mut() {
        let k = (t.col, t.y as i64);
        let n = into[&k] as f64;
        let i = seen.entry(k).or_default();
        t.y += (*i as f64 - (n - 1.0) / 2.0) * 5.0;
        *i += 1;
    }
    // Gap g lies right of column g (g = -1: left of the first column).
    let gap = |g: i64| -> (f64, f64) {
        let last = bounds.len() as i64 - 1;
        if g < 0 {
            (bounds[0].0 - 34.0, bounds[0].0 - 4.0)
        } else if g >= last {
            (bounds[last as usize].1 + 4.0, bounds[last as usize].1 + 44.0)
        } else {
            (bounds[g as usize].1, bounds[g as usize + 1].0)
        }
    };
    // Each relation's tracks: (gap, and for a detour the second gap and its corridor).
    let mut tracks: Vec<(i64, Option<(i64, f64)>)> = Vec::new();
    let mut detour = 0;
    for (_, s, t) in &ends {
        let first = s.col as i64 - 1;
        if t.col + 1 == s.col {
            tracks.push((first, None));
        } else {
            detour += 1;
            tracks.push((
                first,
                Some((t.col as i64, corridor_top - CORRIDOR * (detour - 1) as f64)),
            ));
        }
    }
    // Members of each gap, in track order.
    let mut members: std::collections::BTreeMap<i64, Vec<(usize, bool)>> = Default::default();
    for (i, (g1, d)) in tracks.iter().enumerate() {
        members.entry(*g1).or_default().push((i, false));
        if let Some((g2, _)) = d {
            members.entry(*g2).or_default().push((i, true));
        }
    }
    for list in members.values_mut() {
        list.sort_by(|a, b| ends[a.0].1.y.total_cmp(&ends[b.0].1.y));
    }
    let routes = |members: &std::collections::BTreeMap<i64, Vec<(usize, bool)>>| -> Vec<Vec<(f64, f64)>> {
        let mut xs: HashMap<(usize, bool), f64> = HashMap::new();
        for (g, list) in members {
            let (a, b) = gap(*g);
            for (k, m) in list.iter().enumerate() {
                xs.insert(*m, (a + (k + 1) as f64 * (b - a) / (list.len() + 1) as f64).round());
            }
        }
        ends.iter()
            .zip(&tracks)
            .enumerate()
            .map(|(i, ((_, s, t), (_, d)))| {
                let (sx, tx) = (bounds[s.col].0, bounds[t.col].1);
                let x1 = xs[&(i, false)];
                match d {
                    None => vec![(sx, s.y), (x1, s.y), (x1, t.y), (tx, t.y)],
                    Some((_, yc)) => {
                        let x2 = xs[&(i, true)];
                        vec![(sx, s.y), (x1, s.y), (x1, *yc), (x2, *yc), (x2, t.y), (tx, t.y)]
                    }
                }
            })
            .collect()
    };
    // The order of each gap's tracks with the fewest crossings (all orders up to 6).
    let keys: Vec<i64> = members.keys().copied().collect();
    for g in keys {
        let list = members[&g].clone();
        if list.len() < 2 || list.len() > 6 {
            continue;
        }
        let mut best = (crossings(&routes(&members)), list.clone());
        for perm in permutations(&list) {
            members.insert(g, perm.clone());
            let c = crossings(&routes(&members));
            if c < best.0 {
                best = (c, perm);
            }
        }
        members.insert(g, best.1);
    }
    for ((i, _, _), route) in ends.iter().zip(routes(&members)) {
        edges[*i].route = route;
    }
}

/// Every order of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// How badly orthogonal routes meet: 1 per crossing, 10 per shared stretch.
fn crossings(routes: &[Vec<(f64, f64)>]) -> usize {
    let segments =
        |r: &Vec<(f64, f64)>| -> Vec<((f64, f64), (f64, f64))> { r.windows(2).map(|w| (w[0], w[1])).collect() };
    let mut n = 0;
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            for (p, q) in segments(a) {
                for (u, v) in segments(b) {
                    n += meet(p, q, u, v);
                }
            }
        }
    }
    n
}

fn meet(p: (f64, f64), q: (f64, f64), u: (f64, f64), v: (f64, f64)) -> usize {
    let horizontal = |a: (f64, f64), b: (f64, f64)| (a.1 - b.1).abs() < 0.5;
    let inside = |x: f64, a: f64, b: f64| x > a.min(b) + 0.5 && x < a.max(b) - 0.5;
    let overlap = |a0: f64, a1: f64, b0: f64, b1: f64| a0.max(a1).min(b0.max(b1)) - a0.min(a1).max(b0.min(b1)) > 1.0;
    match (horizontal(p, q), horizontal(u, v)) {
        (true, false) => usize::from(inside(u.0, p.0, q.0) && inside(p.1, u.1, v.1)),
        (false, true) => usize::from(inside(p.0, u.0, v.0) && inside(u.1, p.1, q.1)),
        (true, true) if (p.1 - u.1).abs() < 0.5 && overlap(p.0, q.0, u.0, v.0) => 10,
        (false, false) if (p.0 - u.0).abs() < 0.5 && overlap(p.1, q.1, u.1, v.1) => 10,
        _ => 0,
    }
}

fn depth(t: &Table, by_name: &HashMap<&str, &Table>, seen: &mut Vec<String>) -> usize {
    if seen.contains(&t.name) {
        return 0;
    }
    seen.push(t.name.clone());
    let d = t
        .columns
        .iter()
        .filter_map(|c| c.references.as_ref())
        .filter(|r| r.table != t.name)
        .filter_map(|r| by_name.get(r.table.as_str()))
        .map(|parent| depth(parent, by_name, seen) + 1)
        .max()
        .unwrap_or(0);
    seen.pop();
    d
}

/// A resource's request, records and pagination, for tooltips.
fn request_of(r: &crate::spec::pipeline::Resource) -> String {
    let parent = r
        .for_each
        .as_ref()
        .map(|f| format!(" for each `{}` record", f.parent))
        .unwrap_or_default();
    format!(
        "resource {}: {} {}{parent}; records {}; {}",
        r.name,
        crate::extract::http::method_name(r.method),
        r.target.as_str(),
        r.records.as_str(),
        r.paginator.describe()
    )
}

/// Where a table's rows come from: its resource's request (and for a nested table, the
/// elements of its parent), and its description.
fn table_lineage(p: &Pipeline, t: &Table) -> String {
    let mut lines = Vec::new();
    if let Some(r) = p.resources().iter().find(|r| r.tables.iter().any(|x| x.name == t.name)) {
        lines.push(request_of(r));
        if let (Some(each), Some(parent)) = (&t.each, t.parent.and_then(|i| r.tables.get(i))) {
            lines.push(format!(
                "one row per element {} of each `{}` row",
                each.describe(),
                parent.name
            ));
        }
    }
    lines.extend(t.description.clone());
    lines.join("\n")
}

/// Where a column's value comes from (path, transforms, parent, meta), what it references,
/// and its description.
fn column_lineage(p: &Pipeline, t: &Table, name: &str) -> String {
    use crate::spec::pipeline::ValueSource;
    let Some(c) = t.column(name) else {
        return "the id of the run that loaded the row (sluice's own)".into();
    };
    let mut from = match &c.value {
        ValueSource::Path(path) => format!("path {}", path.as_str()),
        ValueSource::Const(v) => format!("constant {v}"),
        ValueSource::Meta(m) => {
            use crate::spec::model::MetaValue;
            let meta = match m {
                MetaValue::RunId => "run_id",
                MetaValue::RunTime => "run_time",
                MetaValue::Pipeline => "pipeline",
                MetaValue::Index => "index",
            };
            format!("meta {meta}")
        }
        ValueSource::Parent(i) => {
            let parent = p
                .resources()
                .iter()
                .find(|r| r.tables.iter().any(|x| x.name == t.name))
                .and_then(|r| r.tables.get(t.parent?))
                .and_then(|pt| pt.columns.get(*i).map(|pc| format!("{}.{}", pt.name, pc.name)));
            format!("from_parent {}", parent.unwrap_or_default())
        }
        ValueSource::ParentRecord(path) => format!("parent_path {}", path.as_str()),
    };
    for tr in &c.transforms {
        from.push_str(&format!(" → {}", tr.name()));
    }
    let mut lines = vec![from];
    if let Some(r) = &c.references {
        lines.push(format!("references {}.{}", r.table, r.column));
    }
    lines.extend(c.description.clone());
    lines.join("\n")
}

/// One ER row label: key markers, name, type, NOT NULL.
fn row_label(t: &Table, name: &str) -> (String, bool) {
    let col = t.column(name);
    let pk = t.primary_key.iter().any(|k| k == name);
    let fk = col.is_some_and(|c| c.references.is_some());
    let marker = match (pk, fk) {
        (true, true) => "PK FK",
        (true, false) => "PK",
        (false, true) => "FK",
        _ => "",
    };
    let (ty, nullable) = match col {
        Some(c) => (c.column_type.name(), c.nullable),
        None => ("text", false),
    };
    let nn = if nullable { "" } else { " NOT NULL" };
    let label = if marker.is_empty() {
        format!("{name}: {ty}{nn}")
    } else {
        format!("{marker}  {name}: {ty}{nn}")
    };
    (label, pk)
}

/// The ER page: each pipeline's tables, referenced tables left of those referencing them.
pub fn tables_page(pipelines: &[Pipeline]) -> Page {
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    let mut y = 12.0;
    let mut max_x: f64 = 0.0;
    let title = text(
        "er-title".into(),
        MARGIN,
        y,
        vec!["sluice tables".into()],
        20,
        true,
        None,
    );
    y += title.h + 12.0;
    vertices.push(title);
    for p in pipelines {
        let n = id_part(p.name());
        let heading = text(
            format!("{n}-er-title"),
            MARGIN,
            y,
            vec![format!("{} — schema {}", p.name(), p.warehouse().schema)],
            14,
            true,
            None,
        );
        y += heading.h + 12.0;
        vertices.push(heading);
        let tables: Vec<&Table> = p.tables().collect();
        let by_name: HashMap<&str, &Table> = tables.iter().map(|t| (t.name.as_str(), *t)).collect();
        // Each table one column left of the nearest table referencing it, so that
        // relations span one gap and never cross a table.
        let asap: HashMap<&str, usize> = tables
            .iter()
            .map(|t| (t.name.as_str(), depth(t, &by_name, &mut Vec::new())))
            .collect();
        let mut order: Vec<&Table> = tables.clone();
        order.sort_by_key(|t| std::cmp::Reverse(asap[t.name.as_str()]));
        let mut level: HashMap<&str, usize> = HashMap::new();
        for t in &order {
            let referencing = tables
                .iter()
                .filter(|r| {
                    r.name != t.name
                        && r.columns
                            .iter()
                            .any(|c| c.references.as_ref().is_some_and(|x| x.table == t.name))
                })
                .filter_map(|r| level.get(r.name.as_str()))
                .min()
                .copied();
            let l = match referencing {
                Some(l) if l > 0 => (l - 1).max(asap[t.name.as_str()]),
                _ => asap[t.name.as_str()],
            };
            level.insert(t.name.as_str(), l);
        }
        let mut columns: Vec<Vec<&Table>> = Vec::new();
        for t in &tables {
            let d = level[t.name.as_str()];
            if columns.len() <= d {
                columns.resize(d + 1, Vec::new());
            }
            columns[d].push(t);
        }
        order_columns(&mut columns);
        // Relations past a neighbouring column run along corridors above the tables.
        let detours = tables
            .iter()
            .flat_map(|t| {
                t.columns
                    .iter()
                    .filter_map(move |c| c.references.as_ref().map(|r| (t, r)))
            })
            .filter(|(t, r)| {
                level
                    .get(r.table.as_str())
                    .is_some_and(|l| l + 1 != level[t.name.as_str()])
            })
            .count();
        if detours > 0 {
            y += CORRIDOR * detours as f64 + 6.0;
        }
        let corridor_top = y - 6.0;
        let mut bounds: Vec<(f64, f64)> = Vec::new();
        // Each row's column and middle, by the row's id.
        let mut rows_at: HashMap<String, (usize, f64)> = HashMap::new();
        let mut x = MARGIN;
        let mut region_bottom = y;
        for col in &columns {
            let mut col_y = y;
            let mut col_w: f64 = 0.0;
            let mut ids = Vec::new();
            for t in col {
                let mut names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
                if t.run_id_column {
                    names.push(RUN_ID_COLUMN.to_string());
                }
                let rows: Vec<(String, bool)> = names.iter().map(|c| row_label(t, c)).collect();
                let header = vec![t.name.clone()];
                let w = (rows
                    .iter()
                    .map(|(l, key)| super::text_width_styled(l, 12.0, *key))
                    .fold(super::text_width_styled(&t.name, 13.0, true), f64::max)
                    + 28.0)
                    .ceil();
                col_w = col_w.max(w);
                let entity_id = format!("{n}-t-{}", id_part(&t.name));
                ids.push(entity_id.clone());
                let h = ENTITY_HEADER + rows.len() as f64 * ROW_H;
                vertices.push(Vertex {
                    id: entity_id.clone(),
                    parent: None,
                    x,
                    y: col_y,
                    w,
                    h,
                    label: header,
                    shape: Shape::Entity,
                    label_at: LabelAt::Inside,
                    tooltip: Some(table_lineage(p, t)),
                    link: None,
                });
                for (i, name) in names.iter().enumerate() {
                    let row_y = col_y + ENTITY_HEADER + i as f64 * ROW_H + ROW_H / 2.0;
                    rows_at.insert(format!("{entity_id}-c-{}", id_part(name)), (bounds.len(), row_y));
                }
                for (i, ((label, key), name)) in rows.into_iter().zip(&names).enumerate() {
                    vertices.push(Vertex {
                        id: format!("{entity_id}-c-{}", id_part(name)),
                        parent: Some(entity_id.clone()),
                        x: 0.0,
                        y: ENTITY_HEADER + i as f64 * ROW_H,
                        w,
                        h: ROW_H,
                        label: vec![label],
                        shape: Shape::Row { key },
                        label_at: LabelAt::Inside,
                        tooltip: Some(column_lineage(p, t, name)),
                        link: None,
                    });
                }
                col_y += h + 40.0;
            }
            // Rows fill their entity's width; widen the column's entities to the widest.
            for v in vertices
                .iter_mut()
                .filter(|v| ids.contains(&v.id) || v.parent.as_ref().is_some_and(|p| ids.contains(p)))
            {
                v.w = col_w;
            }
            region_bottom = region_bottom.max(col_y - 40.0);
            bounds.push((x, x + col_w));
            x += col_w + COLUMN_GAP;
            max_x = max_x.max(x - COLUMN_GAP);
        }
        // Relations: many (the foreign key row) to one (the referenced key row).
        let first_relation = edges.len();
        for t in &tables {
            let from_entity = format!("{n}-t-{}", id_part(&t.name));
            let mut linked_to_parent = false;
            for c in &t.columns {
                if let Some(r) = &c.references {
                    edges.push(Edge {
                        id: format!("{from_entity}-fk-{}", id_part(&c.name)),
                        source: format!("{from_entity}-c-{}", id_part(&c.name)),
                        target: format!("{n}-t-{}-c-{}", id_part(&r.table), id_part(&r.column)),
                        label: Vec::new(),
                        kind: EdgeKind::Relation,
                        route: Vec::new(),
                    });
                    linked_to_parent |= p.resources().iter().any(|res| {
                        res.tables.first().is_some_and(|t0| t0.name == r.table)
                            && res.tables.iter().any(|x| x.name == t.name)
                    });
                }
            }
            if t.is_nested() && !linked_to_parent {
                if let Some(parent) = p
                    .resources()
                    .iter()
                    .find(|r| r.tables.iter().any(|x| x.name == t.name))
                    .map(|r| &r.tables[t.parent.unwrap_or(0)])
                {
                    edges.push(Edge {
                        id: format!("{from_entity}-nested"),
                        source: from_entity.clone(),
                        target: format!("{n}-t-{}", id_part(&parent.name)),
                        label: vec!["nested in".into()],
                        kind: EdgeKind::Trigger,
                        route: Vec::new(),
                    });
                }
            }
        }
        route_relations(&mut edges[first_relation..], &rows_at, &bounds, corridor_top);
        max_x = max_x.max(bounds.last().map_or(0.0, |b| b.1) + 50.0);
        y = region_bottom + 40.0;
    }
    let width = vertices
        .iter()
        .filter(|v| v.parent.is_none())
        .map(|v| v.x + v.w)
        .fold(max_x, f64::max)
        + MARGIN;
    Page {
        id: "tables".into(),
        name: "Tables".into(),
        width: width.ceil(),
        height: y.ceil(),
        vertices,
        edges,
    }
}

/// The SQLite file the spec's warehouse URL names at its defaults, if it names one.
fn sqlite_file(p: &Pipeline) -> Option<String> {
    let u = p.warehouse().url.offline()?;
    match WarehouseKind::of(&u) {
        WarehouseKind::Sqlite { file, .. } => Some(file.to_string()),
        WarehouseKind::Postgres => None,
    }
}

/// The warehouse box's label: SQLite and its file, with the variable that can point it
/// elsewhere; else PostgreSQL and the schema.
fn warehouse_lines(p: &Pipeline) -> Vec<String> {
    match sqlite_file(p) {
        Some(file) => {
            let mut lines = vec!["SQLite".to_string(), file];
            if let Some(var) = p.warehouse().url.vars().first() {
                lines.push(format!("or ${var}"));
            }
            lines
        }
        None => vec!["PostgreSQL".into(), format!("schema {}", p.warehouse().schema)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_and_slashes() {
        assert_eq!(
            wrap("GET /location /episode /character", 22),
            ["GET /location /episode", "/character"]
        );
        // Words stay whole (the layout widens the gap), up to a limit.
        assert_eq!(
            wrap("merge: customer_subscription_invoice_line_item_00, b", 26),
            ["merge:", "customer_subscription_invoice_line_item_00,", "b"]
        );
        let mut lines = vec!["a".to_string(), "b".into(), "c".into()];
        shorten(&mut lines, 3);
        assert_eq!(lines, ["a", "b", "c"]);
        lines.push("d".into());
        shorten(&mut lines, 2);
        assert_eq!(lines, ["a", "b …"]);
        let long = "x".repeat(70);
        assert_eq!(wrap(&long, 4), ["x".repeat(64), "x".repeat(6)]);
    }
}
