//! Computed layout: positions and labels of every vertex and edge. No manual positions,
//! no randomness: the same specs give the same model.

use std::collections::HashMap;

use super::{label_width, label_width_styled, AwsIcon, Edge, EdgeKind, LabelAt, Page, Role, Shape, Vertex, LINE};
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

/// Split text into lines of at most `max` characters: at spaces, else at slashes.
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
            cur.push_str(piece);
        }
    }
    if !cur.trim().is_empty() {
        lines.push(cur.trim_end().to_string());
    }
    // A piece longer than `max` on its own is cut.
    lines
        .into_iter()
        .flat_map(|l| {
            let chars: Vec<char> = l.chars().collect();
            chars
                .chunks(max)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
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
            Some(_) => vec![f.step.to_string(), format!("λ {}", f.logical_id)],
            None => vec![f.step.to_string(), "AWS Lambda".into()],
        };
        // Column centres are set later ([`place_columns`]); everything starts centred on 0.
        let cx = |_slot: usize| 0.0;
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
            cx(0),
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
        let extract = if aws {
            icon(
                format!("{n}-extract"),
                cx(1),
                cy,
                function_label(&crate::aws::EXTRACT),
                AwsIcon::Lambda,
                &lane_id,
            )
        } else {
            boxed(
                format!("{n}-extract"),
                cx(1),
                cy,
                vec!["extract".into(), "sluice extract".into()],
                Shape::Box { role: Role::Compute },
                &lane_id,
                140.0,
            )
        };
        let loc_offline = p.staging().location.offline().unwrap_or_default();
        let staging = if aws || loc_offline.starts_with("s3://") {
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
            icon(format!("{n}-staging"), cx(2), cy, label, AwsIcon::S3, &lane_id)
        } else {
            let mut label = vec!["staging folder".to_string()];
            label.extend(staging_label(p));
            boxed(
                format!("{n}-staging"),
                cx(2),
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
                cx(3),
                cy,
                function_label(&crate::aws::LOAD),
                AwsIcon::Lambda,
                &lane_id,
            )
        } else {
            boxed(
                format!("{n}-load"),
                cx(3),
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
                cx(4),
                cy,
                vec!["PostgreSQL (RDS)".into(), format!("schema {schema}")],
                AwsIcon::Rds,
                &lane_id,
            )
        } else {
            boxed(
                format!("{n}-db"),
                cx(4),
                cy,
                warehouse_lines(p),
                Shape::Cylinder { role: Role::Database },
                &lane_id,
                140.0,
            )
        };
        let analytics = boxed(
            format!("{n}-analytics"),
            cx(5),
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
            x: cx(4) - tables_w / 2.0,
            y: cy + ICON / 2.0 + 40.0,
            w: tables_w,
            h: tables_h,
            label: table_lines,
            shape: Shape::Note { role: Role::Database },
            label_at: LabelAt::Inside,
        };
        let mut bottom = tables.y + tables.h;

        // Edge labels say what flows.
        let paths: Vec<String> = p.resources().iter().map(|r| r.target.as_str().to_string()).collect();
        let mut get = wrap(&format!("GET {}", paths.join(" ")), 26);
        get.truncate(3);
        let paginators: Vec<String> = p.resources().iter().map(|r| r.paginator.describe()).collect();
        let same = paginators.windows(2).all(|w| w[0] == w[1]);
        get.push(if same {
            paginators[0].clone()
        } else {
            "paginated per resource".into()
        });
        let mut key = vec!["gzip JSON Lines".to_string()];
        key.extend(wrap(&p.staging().key.prefix_for(p.name()), 26).into_iter().take(3));
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
        modes.truncate(3);
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
            });
        }
        if let Some(schedule) = p.runtime().and_then(|r| r.schedule.clone()) {
            let sched_cy = tables.y + 40.0;
            let s = if aws {
                icon(
                    format!("{n}-schedule"),
                    cx(1),
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
                    cx(1),
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
                });
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
            x += col_w + COLUMN_GAP;
            max_x = max_x.max(x - COLUMN_GAP);
        }
        // Relations: many (the foreign key row) to one (the referenced key row).
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
                    });
                }
            }
        }
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
    let file = u.strip_prefix("sqlite://")?;
    Some(file.split('?').next().unwrap_or(file).to_string())
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
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }
}
