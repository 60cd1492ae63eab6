//! The architecture page: one lane per pipeline, its steps in six columns (API, extract,
//! staging, load, warehouse, analytics), each step built by its own function, the edge
//! labels saying what flows, and the legend.

use super::{boxed, icon, id_part, request_of, text, EDGE_FONT, EDGE_PAD, ICON, LANE_TITLE, MARGIN, MIN_GAP, ROW_Y};
use crate::diagram::text::{label_width, shorten, wrap, LINE};
use crate::diagram::{AwsIcon, Edge, EdgeKind, LabelAt, Page, Role, Shape, Vertex};
use crate::spec::location::{StagingLocation, WarehouseKind};
use crate::spec::pipeline::{Pipeline, RuntimeTarget, WriteMode};

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
pub(crate) fn pipeline_page(pipelines: &[Pipeline]) -> Page {
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
        let (lane, children) = Lane::new(p).build(y, &mut gaps, &mut edges);
        y += lane.h + 24.0;
        lanes.push((lane, children));
    }
    let lane_w = place_columns(&mut lanes, &gaps);
    for (mut lane, children) in lanes {
        lane.w = lane_w;
        vertices.push(lane);
        vertices.extend(children);
    }
    let y = legend(y, lane_w, &mut vertices);
    Page {
        id: "pipeline".into(),
        name: "Pipeline".into(),
        width: (MARGIN * 2.0 + lane_w).ceil(),
        height: (y + MARGIN).ceil(),
        vertices,
        edges,
    }
}

/// One pipeline's lane while it is built: what every step's builder reads.
struct Lane<'a> {
    p: &'a Pipeline,
    /// The pipeline's name as an id part, and the lane's id.
    n: String,
    lane_id: String,
    aws: bool,
    /// On AWS, what `sluice deploy aws` creates, named as its template names it.
    deployed: Option<crate::aws::Deployed>,
    /// The centre line of the row of steps. Columns are placed later ([`place_columns`],
    /// by [`column_of`] the vertex id): everything starts centred on x = 0.
    cy: f64,
}

impl<'a> Lane<'a> {
    fn new(p: &'a Pipeline) -> Self {
        let n = id_part(p.name());
        let aws = on_aws(p);
        Lane {
            p,
            lane_id: format!("{n}-lane"),
            n,
            aws,
            deployed: aws.then(|| crate::aws::deployed(p).ok()).flatten(),
            cy: ROW_Y + ICON / 2.0 + 10.0,
        }
    }

    /// The lane at `y` and its children; its flows and trigger go to `edges`, and each
    /// gap between two columns widens to the flow label that crosses it.
    fn build(&self, y: f64, gaps: &mut [f64; 5], edges: &mut Vec<Edge>) -> (Vertex, Vec<Vertex>) {
        let mut children = vec![self.subtitle()];
        let steps = [
            self.source(),
            self.extract(),
            self.staging(),
            self.function_step(&crate::aws::LOAD, "load"),
            self.warehouse(),
            self.analytics(),
        ];
        let tables = self.tables();
        let mut bottom = tables.y + tables.h;
        for (i, label) in self.flow_labels().into_iter().enumerate() {
            gaps[i] = gaps[i].max(label_width(&label, EDGE_FONT) + 2.0 * EDGE_PAD);
            edges.push(Edge {
                id: format!("{}-flow-{i}", self.n),
                source: steps[i].id.clone(),
                target: steps[i + 1].id.clone(),
                label,
                kind: EdgeKind::Flow,
                route: Vec::new(),
            });
        }
        if let Some(s) = self.schedule(tables.y + 40.0) {
            bottom = bottom.max(s.y + s.h);
            edges.push(Edge {
                id: format!("{}-trigger", self.n),
                source: s.id.clone(),
                target: steps[1].id.clone(),
                label: Vec::new(),
                kind: EdgeKind::Trigger,
                route: Vec::new(),
            });
            children.push(s);
        }
        children.extend(steps);
        children.push(tables);
        let lane = Vertex {
            id: self.lane_id.clone(),
            parent: None,
            x: MARGIN,
            y,
            w: 0.0,
            h: (bottom + 24.0).ceil(),
            label: vec![self.p.name().to_string()],
            shape: Shape::Lane,
            label_at: LabelAt::Inside,
            tooltip: None,
            link: None,
        };
        (lane, children)
    }

    fn id(&self, step: &str) -> String {
        format!("{}-{step}", self.n)
    }

    fn boxed(&self, step: &str, lines: Vec<String>, shape: Shape, min_w: f64) -> Vertex {
        boxed(self.id(step), 0.0, self.cy, lines, shape, &self.lane_id, min_w)
    }

    fn icon(&self, step: &str, label: Vec<String>, icon_kind: AwsIcon) -> Vertex {
        icon(self.id(step), 0.0, self.cy, label, icon_kind, &self.lane_id)
    }

    /// The lane's subtitle: the pipeline, its description and where it runs.
    fn subtitle(&self) -> Vertex {
        let p = self.p;
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
        text(
            self.id("subtitle"),
            LANE_TITLE + 10.0,
            8.0,
            vec![format!("{subtitle} — {runtime}")],
            13,
            true,
            Some(self.lane_id.clone()),
        )
    }

    /// Column 0: the API, with every resource's request as the tooltip.
    fn source(&self) -> Vertex {
        let p = self.p;
        let source = self.boxed(
            "source",
            vec![
                "REST API".into(),
                host_of(p),
                format!("auth: {}", p.source().auth.kind()),
            ],
            Shape::Box { role: Role::Source },
            170.0,
        );
        Vertex {
            tooltip: Some(p.resources().iter().map(request_of).collect::<Vec<_>>().join("\n")),
            ..source
        }
    }

    /// Column 1: extract.
    fn extract(&self) -> Vertex {
        self.function_step(&crate::aws::EXTRACT, "extract")
    }

    /// Columns 1 and 3: a step that is a Lambda function on AWS, a `sluice` command else.
    fn function_step(&self, f: &crate::aws::Function, step: &str) -> Vertex {
        if self.aws {
            let label = match &self.deployed {
                Some(d) => vec![f.step.to_string(), format!("λ {}", d.function_id(f))],
                None => vec![f.step.to_string(), "AWS Lambda".into()],
            };
            self.icon(step, label, AwsIcon::Lambda)
        } else {
            self.boxed(
                step,
                vec![step.into(), format!("sluice {step}")],
                Shape::Box { role: Role::Compute },
                140.0,
            )
        }
    }

    /// Column 2: staging, S3 or a folder.
    fn staging(&self) -> Vertex {
        let p = self.p;
        let loc_offline = p.staging().location.offline().unwrap_or_default();
        if self.aws || StagingLocation::is_s3(&loc_offline) {
            let label = match &self.deployed {
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
            self.icon("staging", label, AwsIcon::S3)
        } else {
            let mut label = vec!["staging folder".to_string()];
            label.extend(staging_label(p));
            // A folder by default, which the variable can turn into S3.
            if let Some(var) = p.staging().location.sole_var() {
                label.push(format!("(S3 when ${var} is s3://…)"));
            }
            self.boxed("staging", label, Shape::Box { role: Role::Storage }, 140.0)
        }
    }

    /// Column 4: the warehouse.
    fn warehouse(&self) -> Vertex {
        if self.aws {
            let schema = &self.p.warehouse().schema;
            self.icon(
                "db",
                vec!["PostgreSQL (RDS)".into(), format!("schema {schema}")],
                AwsIcon::Rds,
            )
        } else {
            self.boxed(
                "db",
                warehouse_lines(self.p),
                Shape::Cylinder { role: Role::Database },
                140.0,
            )
        }
    }

    /// Column 5: who reads the tables.
    fn analytics(&self) -> Vertex {
        self.boxed(
            "analytics",
            vec!["analytics".into(), "SQL, BI, notebooks".into()],
            Shape::Box { role: Role::Analytics },
            150.0,
        )
    }

    /// Under the warehouse: the schema's tables, linked to the Tables page.
    fn tables(&self) -> Vertex {
        let mut table_lines = vec![format!("tables in {}:", self.p.warehouse().schema)];
        for t in self.p.tables() {
            let key = if t.primary_key.is_empty() {
                String::new()
            } else {
                format!(", key {}", t.primary_key.join("+"))
            };
            table_lines.push(format!("{} ({}{key})", t.name, t.write.name()));
        }
        let tables_w = (label_width(&table_lines, 12.0) + 24.0).max(150.0).ceil();
        let tables_h = (table_lines.len() as f64 * LINE + 20.0).ceil();
        Vertex {
            id: self.id("tables"),
            parent: Some(self.lane_id.clone()),
            x: -tables_w / 2.0,
            y: self.cy + ICON / 2.0 + 40.0,
            w: tables_w,
            h: tables_h,
            label: table_lines,
            shape: Shape::Note { role: Role::Database },
            label_at: LabelAt::Inside,
            tooltip: Some("the Tables page shows their columns and where each comes from".into()),
            link: Some("data:page/id,tables".into()),
        }
    }

    /// Under extract, when the spec has a schedule: what starts it.
    fn schedule(&self, cy: f64) -> Option<Vertex> {
        let schedule = self.p.runtime().and_then(|r| r.schedule.clone())?;
        Some(if self.aws {
            let rule = self
                .deployed
                .as_ref()
                .and_then(|d| d.schedule_rule())
                .unwrap_or_else(|| "schedule (EventBridge)".into());
            icon(
                self.id("schedule"),
                0.0,
                cy,
                vec![rule, schedule],
                AwsIcon::EventBridge,
                &self.lane_id,
            )
        } else {
            boxed(
                self.id("schedule"),
                0.0,
                cy,
                vec!["schedule".into(), schedule],
                Shape::Box { role: Role::Schedule },
                &self.lane_id,
                140.0,
            )
        })
    }

    /// The labels of the five flows, saying what moves between the six columns.
    fn flow_labels(&self) -> [Vec<String>; 5] {
        let p = self.p;
        let verb = |r: &crate::spec::pipeline::Resource| match &r.job {
            Some(_) => "job",
            None => crate::extract::http::method_name(r.method),
        };
        let verbs: Vec<&str> = p.resources().iter().map(verb).collect();
        let one_verb = verbs.windows(2).all(|w| w[0] == w[1]);
        let paths: Vec<String> = p
            .resources()
            .iter()
            .map(|r| {
                let format = match r.format.streamed() {
                    true => format!(" ({})", r.format.name()),
                    false => String::new(),
                };
                match one_verb {
                    true => format!("{}{format}", r.target.as_str()),
                    false => format!("{} {}{format}", verb(r), r.target.as_str()),
                }
            })
            .collect();
        let lead = if one_verb {
            format!("{} ", verbs[0])
        } else {
            String::new()
        };
        let mut get = wrap(&format!("{lead}{}", paths.join(" ")), 26);
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
        let manifest = match &self.deployed {
            Some(d) => vec!["manifest, then".to_string(), d.state_machine_id()],
            None => vec!["objects + manifest".to_string()],
        };
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
        let how = if !self.aws && sqlite_file(p).is_some() {
            "inserts"
        } else {
            "binary COPY"
        };
        let mut load_label = vec![format!("{how}, 1 transaction")];
        load_label.extend(modes);
        [get, key, manifest, load_label, vec!["SQL".to_string()]]
    }
}

/// The legend under the lanes, from `y`; where it ends.
fn legend(mut y: f64, lane_w: f64, vertices: &mut Vec<Vertex>) -> f64 {
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
    y
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
