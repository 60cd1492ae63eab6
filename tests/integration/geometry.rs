//! The geometry of `sluice diagram`'s draw.io output over a corpus of specs (the reference
//! pipelines, the examples, generated stress specs): every box and label rectangle is
//! computed from the file, with text measured in the bundled font, and none may cover
//! another, no label may overflow its box, and no arrow may run through a box.

use std::path::{Path, PathBuf};

use sluice::diagram::{label_width, label_width_styled};

use crate::support::{cell_attr, root, Sluice};

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        let dx = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let dy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        dx > 0.5 && dy > 0.5
    }
    fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x - 0.5
            && o.y >= self.y - 0.5
            && o.x + o.w <= self.x + self.w + 0.5
            && o.y + o.h <= self.y + self.h + 0.5
    }
    /// Whether the segment from `a` to `b` (horizontal or vertical) passes inside.
    fn crossed_by(&self, a: (f64, f64), b: (f64, f64)) -> bool {
        let (x0, x1) = (a.0.min(b.0), a.0.max(b.0));
        let (y0, y1) = (a.1.min(b.1), a.1.max(b.1));
        x1 > self.x + 1.0 && x0 < self.x + self.w - 1.0 && y1 > self.y + 1.0 && y0 < self.y + self.h - 1.0
    }
}

/// One drawn thing: a vertex's own rectangle, or a label outside it.
#[derive(Debug)]
struct Drawn {
    what: String,
    rect: Rect,
    /// The vertex it belongs to (a label outside a vertex belongs to it).
    owner: String,
}

/// A routed relation: its id, the entities it joins and its path.
type Relation = (String, String, String, Vec<(f64, f64)>);

struct Cell {
    id: String,
    parent: String,
    style: String,
    label: Vec<String>,
    rect: Rect,
    source: String,
    target: String,
    edge: bool,
    /// An edge's bends (`<Array as="points">`).
    points: Vec<(f64, f64)>,
}

fn style_num(style: &str, key: &str, default: f64) -> f64 {
    style
        .split(';')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every problem with one page of a draw.io file.
fn page_problems(page: roxmltree::Node) -> Vec<String> {
    let cells: Vec<Cell> = page
        .descendants()
        .filter(|n| n.has_tag_name("mxCell"))
        .map(|c| {
            let g = c.children().find(|n| n.has_tag_name("mxGeometry"));
            let f = |a: &str| {
                g.and_then(|g| g.attribute(a))
                    .map(|v| v.parse::<f64>().unwrap())
                    .unwrap_or(0.0)
            };
            let label = cell_attr(c, "value").unwrap_or("");
            Cell {
                id: cell_attr(c, "id").unwrap().to_string(),
                parent: c.attribute("parent").unwrap_or("").to_string(),
                style: c.attribute("style").unwrap_or("").to_string(),
                label: if label.is_empty() {
                    Vec::new()
                } else {
                    label.lines().map(str::to_string).collect()
                },
                rect: Rect {
                    x: f("x"),
                    y: f("y"),
                    w: f("width"),
                    h: f("height"),
                },
                source: c.attribute("source").unwrap_or("").to_string(),
                target: c.attribute("target").unwrap_or("").to_string(),
                edge: c.attribute("edge") == Some("1"),
                points: c
                    .descendants()
                    .filter(|n| n.has_tag_name("mxPoint"))
                    .map(|p| {
                        let f = |a: &str| p.attribute(a).map(|v| v.parse::<f64>().unwrap()).unwrap_or(0.0);
                        (f("x"), f("y"))
                    })
                    .collect(),
            }
        })
        .collect();
    let by_id = |id: &str| cells.iter().find(|c| c.id == id);
    let absolute = |c: &Cell| {
        let mut r = c.rect;
        let mut parent = by_id(&c.parent);
        while let Some(p) = parent.filter(|p| !p.edge && !p.style.is_empty()) {
            r.x += p.rect.x;
            r.y += p.rect.y;
            parent = by_id(&p.parent);
        }
        r
    };
    let container = |c: &Cell| c.style.starts_with("swimlane");
    let vertices: Vec<&Cell> = cells.iter().filter(|c| !c.edge && !c.style.is_empty()).collect();
    let mut problems = Vec::new();
    let mut drawn: Vec<Drawn> = Vec::new();
    const LINE: f64 = 15.0;
    for v in &vertices {
        let r = absolute(v);
        let size = style_num(&v.style, "fontSize", 12.0);
        let bold = style_num(&v.style, "fontStyle", 0.0) as i32 & 1 == 1;
        let lw = label_width_styled(&v.label, size, bold);
        let lh = v.label.len() as f64 * LINE;
        // Containers and their children are checked by containment instead.
        if let Some(p) = by_id(&v.parent).filter(|p| container(p)) {
            if !absolute(p).contains(&r) {
                problems.push(format!("`{}` sticks out of `{}`", v.id, p.id));
            }
        }
        if container(v) {
            continue;
        }
        // A label drawn outside its vertex: above an icon, or right of it.
        let outside = if v.style.contains("verticalLabelPosition=top") {
            Some(Rect {
                x: r.x + r.w / 2.0 - lw / 2.0,
                y: r.y - lh - 2.0,
                w: lw,
                h: lh,
            })
        } else if v.style.contains("labelPosition=right") {
            Some(Rect {
                x: r.x + r.w + 6.0,
                y: r.y + r.h / 2.0 - lh / 2.0,
                w: lw,
                h: lh,
            })
        } else {
            None
        };
        if let Some(label) = outside {
            drawn.push(Drawn {
                what: format!("label of `{}`", v.id),
                rect: label,
                owner: v.id.clone(),
            });
        } else if !v.label.is_empty() {
            // Inside: the text fits the box, beside its spacing.
            let room = r.w - if v.style.starts_with("text;") { 4.0 } else { 8.0 };
            if lw > room {
                problems.push(format!(
                    "the text of `{}` is {lw:.0} px wide in a {:.0} px box: {:?}",
                    v.id, r.w, v.label
                ));
            }
        }
        drawn.push(Drawn {
            what: format!("`{}`", v.id),
            rect: r,
            owner: v.id.clone(),
        });
    }
    // Edge labels and segments, for the straight arrows of the pipeline page, and the
    // routed relations of the tables page.
    let mut segments = Vec::new();
    let mut relations: Vec<Relation> = Vec::new();
    for e in cells.iter().filter(|c| c.edge) {
        let (Some(s), Some(t)) = (by_id(&e.source), by_id(&e.target)) else {
            problems.push(format!("edge `{}` has a dangling end", e.id));
            continue;
        };
        let (sr, tr) = (absolute(s), absolute(t));
        if !e.points.is_empty() {
            // A routed relation: from its exit point through its bends to its entry point.
            let at = |r: Rect, kx: &str, ky: &str| {
                (
                    r.x + r.w * style_num(&e.style, kx, 0.5),
                    r.y + r.h * style_num(&e.style, ky, 0.5),
                )
            };
            let mut path = vec![at(sr, "exitX", "exitY")];
            path.extend(e.points.iter().copied());
            path.push(at(tr, "entryX", "entryY"));
            for w in path.windows(2) {
                if (w[0].0 - w[1].0).abs() > 0.5 && (w[0].1 - w[1].1).abs() > 0.5 {
                    problems.push(format!(
                        "relation `{}` has a slanted stretch {:?} → {:?}",
                        e.id, w[0], w[1]
                    ));
                }
            }
            // The entities it joins are the rows' parents.
            let (se, te) = (s.parent.clone(), t.parent.clone());
            relations.push((e.id.clone(), se, te, path));
            continue;
        }
        let (a, b) = if e.style.contains("exitX=1") {
            ((sr.x + sr.w, sr.y + sr.h / 2.0), (tr.x, tr.y + tr.h / 2.0))
        } else if e.style.contains("dashed=1") {
            // A schedule below its step: straight up.
            ((sr.x + sr.w / 2.0, sr.y), (tr.x + tr.w / 2.0, tr.y + tr.h))
        } else {
            continue;
        };
        if (a.1 - b.1).abs() > 0.5 && (a.0 - b.0).abs() > 0.5 {
            problems.push(format!("edge `{}` is not straight: {a:?} → {b:?}", e.id));
        }
        if !e.label.is_empty() {
            let size = style_num(&e.style, "fontSize", 11.0);
            let (lw, lh) = (label_width(&e.label, size), e.label.len() as f64 * size * 1.25);
            let mid = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            drawn.push(Drawn {
                what: format!("label of edge `{}`", e.id),
                rect: Rect {
                    x: mid.0 - lw / 2.0,
                    y: mid.1 - lh / 2.0,
                    w: lw,
                    h: lh,
                },
                owner: e.id.clone(),
            });
        }
        segments.push((e.id.clone(), e.source.clone(), e.target.clone(), a, b));
    }
    for (i, d) in drawn.iter().enumerate() {
        for o in &drawn[i + 1..] {
            if d.owner != o.owner && d.rect.overlaps(&o.rect) {
                problems.push(format!("{} covers {} ({:?} / {:?})", d.what, o.what, d.rect, o.rect));
            }
        }
    }
    for (id, s, t, a, b) in &segments {
        for d in drawn
            .iter()
            .filter(|d| &d.owner != s && &d.owner != t && &d.owner != id)
        {
            if d.rect.crossed_by(*a, *b) {
                problems.push(format!("edge `{id}` runs through {}", d.what));
            }
        }
    }
    // Relations run through no other table, and no two share a stretch.
    let entities: Vec<&Cell> = vertices
        .iter()
        .copied()
        .filter(|v| v.style.starts_with("swimlane") && v.style.contains("childLayout"))
        .collect();
    for (id, se, te, path) in &relations {
        for ent in entities.iter().filter(|v| &v.id != se && &v.id != te) {
            let r = absolute(ent);
            if path.windows(2).any(|w| r.crossed_by(w[0], w[1])) {
                problems.push(format!("relation `{id}` runs through table `{}`", ent.id));
            }
        }
    }
    for (i, (a, _, _, pa)) in relations.iter().enumerate() {
        for (b, _, _, pb) in &relations[i + 1..] {
            for u in pa.windows(2) {
                for v in pb.windows(2) {
                    if shared(u[0], u[1], v[0], v[1]) {
                        problems.push(format!(
                            "relations `{a}` and `{b}` share the stretch {:?} → {:?}",
                            u[0], u[1]
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Whether two axis-parallel segments lie on one line and overlap.
fn shared(p: (f64, f64), q: (f64, f64), u: (f64, f64), v: (f64, f64)) -> bool {
    let overlap = |a0: f64, a1: f64, b0: f64, b1: f64| a0.max(a1).min(b0.max(b1)) - a0.min(a1).max(b0.min(b1)) > 1.0;
    let flat = |a: (f64, f64), b: (f64, f64)| (a.1 - b.1).abs() < 0.5;
    let upright = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 0.5;
    (flat(p, q) && flat(u, v) && (p.1 - u.1).abs() < 0.5 && overlap(p.0, q.0, u.0, v.0))
        || (upright(p, q) && upright(u, v) && (p.0 - u.0).abs() < 0.5 && overlap(p.1, q.1, u.1, v.1))
}

/// A generated spec: `resources` resources with long names and paths, each table
/// referencing the previous one.
fn stress_spec(name: &str, resources: usize, staging: &str, warehouse: &str, runtime: &str) -> String {
    let mut text = format!(
        "version: 1\nname: {name}\ndescription: A generated spec with {resources} resources whose names and paths are long, to stress the layout of the diagram\nsource:\n  base_url: https://api.an-example-of-a-rather-long-host-name.example.org/v1/and/a/long/base/path\n  auth: {{type: bearer, token: \"${{STRESS_TOKEN}}\"}}\nstaging:\n  location: {staging}\nwarehouse:\n  url: {warehouse}\n  schema: {name}_schema_with_a_long_name\n{runtime}resources:\n"
    );
    for i in 0..resources {
        let table = format!("customer_subscription_invoice_line_item_{i:02}");
        text.push_str(&format!(
            "  - name: {table}\n    path: /customers/subscriptions/invoices/line-items/{i}\n    records: $.data.items[*]\n    paginate: {{type: cursor, cursor: $.meta.next_cursor, param: starting_after}}\n    table:\n      name: {table}\n      write: {}\n      primary_key: [id]\n      columns:\n        - {{name: id, type: bigint, path: $.id}}\n        - {{name: a_column_with_a_rather_long_descriptive_name, type: text, path: $.attributes.something.rather.deeply.nested}}\n",
            ["merge", "append", "replace"][i % 3]
        ));
        // Relations past other columns (to the first table) and to the table itself.
        if i == 3 && resources > 3 {
            text.push_str("        - {name: first_id, type: bigint, path: $.first, references: customer_subscription_invoice_line_item_00.id}\n");
        }
        if i == 4 {
            text.push_str(&format!(
                "        - {{name: parent_id, type: bigint, path: $.parent, references: {table}.id}}\n"
            ));
        }
        if i > 0 {
            text.push_str(&format!(
                "        - {{name: previous_id, type: bigint, path: $.previous, references: customer_subscription_invoice_line_item_{:02}.id}}\n",
                i - 1
            ));
        }
    }
    text
}

fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut specs: Vec<PathBuf> = ["pipelines", "examples/specs"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    specs.sort();
    let aws = "runtime:\n  target: aws_lambda\n  region: eu-west-1\n  schedule: rate(15 minutes)\n";
    let local = "runtime:\n  target: local\n  schedule: cron(0 6 * * ? *)\n";
    for (name, n, staging, warehouse, runtime) in [
        (
            "stress_twelve",
            12,
            "file://.sluice/staging",
            "sqlite://.sluice/stress.db",
            "",
        ),
        (
            "stress_aws",
            3,
            "${SLUICE_STAGING:-file://.sluice/staging}",
            "${DATABASE_URL}",
            aws,
        ),
        (
            "stress_s3",
            5,
            "s3://a-bucket-with-a-long-name/and/a/deep/prefix/for/staging",
            "postgres://warehouse.internal/analytics",
            local,
        ),
        (
            "stress_one",
            1,
            "file:///var/lib/sluice/staging",
            "${DATABASE_URL:-sqlite:///var/lib/sluice/one.db}",
            "",
        ),
    ] {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, stress_spec(name, n, staging, warehouse, runtime)).unwrap();
        specs.push(path);
    }
    specs
}

fn problems_of(specs: &[&Path]) -> Vec<String> {
    let mut args: Vec<&std::ffi::OsStr> = vec!["diagram".as_ref()];
    args.extend(specs.iter().map(|s| s.as_os_str()));
    let xml = Sluice::new(args).run().success().stdout;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("diagram"))
        .flat_map(|page| {
            let name = page.attribute("name").unwrap_or("").to_string();
            page_problems(page)
                .into_iter()
                .map(move |p| format!("{name} page: {p}"))
        })
        .collect()
}

#[test]
fn no_label_covers_a_box_and_no_arrow_runs_through_one_for_any_spec() {
    // SLUICE_GEOMETRY_CORPUS=DIR keeps the generated specs there (to render them with
    // draw.io's own renderer, say).
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SLUICE_GEOMETRY_CORPUS").map(PathBuf::from);
    let specs = corpus(dir.as_deref().unwrap_or(temp.path()));
    assert!(specs.len() >= 12, "{specs:?}");
    let mut problems = Vec::new();
    for spec in &specs {
        for p in problems_of(&[spec]) {
            problems.push(format!("{}: {p}", spec.display()));
        }
    }
    let all: Vec<&Path> = specs.iter().map(PathBuf::as_path).collect();
    problems.extend(
        problems_of(&all)
            .into_iter()
            .map(|p| format!("all specs together: {p}")),
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_check_finds_a_label_that_covers_a_box() {
    // The checker itself: an edge label as wide as the gap it sits in is caught.
    let xml = r#"<mxfile><diagram name="p"><mxGraphModel><root>
        <mxCell id="0"/><mxCell id="1" parent="0"/>
        <mxCell id="a" value="a" style="rounded=1;fontSize=12;" vertex="1" parent="1"><mxGeometry x="0" y="0" width="40" height="30" as="geometry"/></mxCell>
        <mxCell id="b" value="b" style="rounded=1;fontSize=12;" vertex="1" parent="1"><mxGeometry x="60" y="0" width="40" height="30" as="geometry"/></mxCell>
        <mxCell id="c" value="a label far wider than the gap" style="exitX=1;fontSize=11;" edge="1" parent="1" source="a" target="b"><mxGeometry relative="1" as="geometry"/></mxCell>
        <mxCell id="d" value="" style="rounded=1;fontSize=12;" vertex="1" parent="1"><mxGeometry x="45" y="-40" width="10" height="100" as="geometry"/></mxCell>
        <mxCell id="t1" value="t1" style="swimlane;childLayout=stackLayout;fontSize=13;fontStyle=1;" vertex="1" parent="1"><mxGeometry x="0" y="200" width="100" height="60" as="geometry"/></mxCell>
        <mxCell id="t1-r" value="id" style="text;fontSize=12;" vertex="1" parent="t1"><mxGeometry x="0" y="30" width="100" height="30" as="geometry"/></mxCell>
        <mxCell id="t2" value="t2" style="swimlane;childLayout=stackLayout;fontSize=13;fontStyle=1;" vertex="1" parent="1"><mxGeometry x="400" y="200" width="100" height="60" as="geometry"/></mxCell>
        <mxCell id="t2-r" value="fk" style="text;fontSize=12;" vertex="1" parent="t2"><mxGeometry x="0" y="30" width="100" height="30" as="geometry"/></mxCell>
        <mxCell id="t3" value="t3" style="swimlane;childLayout=stackLayout;fontSize=13;fontStyle=1;" vertex="1" parent="1"><mxGeometry x="200" y="200" width="100" height="60" as="geometry"/></mxCell>
        <mxCell id="r1" value="" style="exitX=0;exitY=0.5;entryX=1;entryY=0.5;" edge="1" parent="1" source="t2-r" target="t1-r"><mxGeometry relative="1" as="geometry"><Array as="points"><mxPoint x="350" y="245"/></Array></mxGeometry></mxCell>
        <mxCell id="r2" value="" style="exitX=0;exitY=0.5;entryX=1;entryY=0.5;" edge="1" parent="1" source="t2-r" target="t1-r"><mxGeometry relative="1" as="geometry"><Array as="points"><mxPoint x="360" y="245"/></Array></mxGeometry></mxCell>
    </root></mxGraphModel></diagram></mxfile>"#;
    let doc = roxmltree::Document::parse(xml).unwrap();
    let page = doc.descendants().find(|n| n.has_tag_name("diagram")).unwrap();
    let problems = page_problems(page);
    let covers = |what: &str| {
        problems
            .iter()
            .any(|p| p.contains(" covers ") && p.contains("label of edge `c`") && p.contains(what))
    };
    assert!(covers("`a`") && covers("`b`"), "{problems:?}");
    assert!(
        problems.iter().any(|p| p == "edge `c` runs through `d`"),
        "{problems:?}"
    );
}
