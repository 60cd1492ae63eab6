//! `sluice diagram` through the binary: the draw.io file's structure, determinism, the
//! committed examples and `--check`.

use std::collections::{HashMap, HashSet};

use crate::support::{cell_attr, root, Sluice};

const SPECS: [&str; 2] = ["pipelines/coincap.yaml", "pipelines/rickandmorty.yaml"];

fn drawio() -> String {
    Sluice::new(["diagram", SPECS[0], SPECS[1]]).run().success().stdout
}

#[test]
fn the_drawio_file_is_well_formed() {
    let xml = drawio();
    let doc = roxmltree::Document::parse(&xml).expect("the draw.io file is XML");
    let pages: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("diagram")).collect();
    assert_eq!(
        pages.iter().map(|p| p.attribute("name").unwrap()).collect::<Vec<_>>(),
        ["Pipeline", "Tables"]
    );
    let mut all_ids = HashSet::new();
    for page in pages {
        let model = page.descendants().find(|n| n.has_tag_name("mxGraphModel")).unwrap();
        let (pw, ph): (f64, f64) = (
            model.attribute("pageWidth").unwrap().parse().unwrap(),
            model.attribute("pageHeight").unwrap().parse().unwrap(),
        );
        let cells: Vec<_> = page.descendants().filter(|n| n.has_tag_name("mxCell")).collect();
        for c in &cells {
            assert!(
                all_ids.insert(cell_attr(*c, "id").unwrap().to_string()),
                "duplicate id {:?}",
                cell_attr(*c, "id")
            );
        }
        let ids: HashSet<&str> = cells.iter().map(|c| cell_attr(*c, "id").unwrap()).collect();
        // Absolute geometry of every vertex.
        let mut geo: HashMap<&str, (f64, f64, f64, f64, &str)> = HashMap::new();
        for c in cells.iter().filter(|c| c.attribute("vertex") == Some("1")) {
            let g = c.children().find(|n| n.has_tag_name("mxGeometry")).unwrap();
            let f = |a: &str| g.attribute(a).map(|v| v.parse::<f64>().unwrap()).unwrap_or(0.0);
            geo.insert(
                cell_attr(*c, "id").unwrap(),
                (f("x"), f("y"), f("width"), f("height"), c.attribute("parent").unwrap()),
            );
        }
        let absolute = |id: &str| {
            let (mut x, mut y, w, h, mut parent) = geo[id];
            while let Some(&(px, py, _, _, pp)) = geo.get(parent) {
                x += px;
                y += py;
                parent = pp;
            }
            (x, y, w, h)
        };
        for c in cells.iter().filter(|c| c.attribute("edge") == Some("1")) {
            for end in ["source", "target"] {
                let id = c
                    .attribute(end)
                    .unwrap_or_else(|| panic!("edge {:?} has no {end}", cell_attr(*c, "id")));
                assert!(
                    ids.contains(id),
                    "edge {:?}: {end} {id} does not exist",
                    cell_attr(*c, "id")
                );
            }
        }
        let vertices: Vec<&str> = geo.keys().copied().collect();
        for (i, a) in vertices.iter().enumerate() {
            let ra = absolute(a);
            assert!(
                ra.0 >= 0.0 && ra.1 >= 0.0 && ra.0 + ra.2 <= pw && ra.1 + ra.3 <= ph,
                "{a} lies outside the page"
            );
            for b in &vertices[i + 1..] {
                if geo[a].4 != geo[b].4 {
                    continue;
                }
                let rb = absolute(b);
                let overlap = ra.0 < rb.0 + rb.2 && rb.0 < ra.0 + ra.2 && ra.1 < rb.1 + rb.3 && rb.1 < ra.1 + ra.3;
                assert!(!overlap, "{a} overlaps {b}");
            }
        }
    }
}

#[test]
fn every_table_column_appears_and_aws_icons_are_used() {
    let xml = drawio();
    for spec in SPECS {
        let ddl = Sluice::new(["ddl", spec]).run().success().stdout;
        for line in ddl.lines().filter(|l| l.starts_with("    \"")) {
            let column = line.trim().split('"').nth(1).unwrap();
            assert!(
                xml.contains(&format!("  {column}: ")) || xml.contains(&format!("\"{column}: ")),
                "column {column} of {spec} is not drawn"
            );
        }
    }
    for icon in [
        "mxgraph.aws4.lambda",
        "mxgraph.aws4.s3",
        "mxgraph.aws4.rds",
        "mxgraph.aws4.eventbridge",
    ] {
        assert!(xml.contains(&format!("resIcon={icon};")), "{icon} missing");
    }
    assert!(xml.contains("GET /location /episode"), "edge labels name the endpoints");
    assert!(
        xml.contains("ERmany") && xml.contains("ERmandOne"),
        "crow's-foot relations"
    );
    assert!(!xml.contains("COINCAP_TOKEN"), "no secret, not even its name, is drawn");
}

#[test]
fn output_is_deterministic_in_every_format() {
    assert_eq!(drawio(), drawio());
    let svg = || {
        Sluice::new(["diagram", "--format", "svg", SPECS[0], SPECS[1]])
            .run()
            .success()
            .stdout
    };
    assert_eq!(svg(), svg());
    let dir = tempfile::tempdir().unwrap();
    let png = |name: &str| {
        let path = dir.path().join(name);
        Sluice::new(["diagram", SPECS[0], SPECS[1], "-o", path.to_str().unwrap()])
            .run()
            .success();
        std::fs::read(path).unwrap()
    };
    let (a, b) = (png("a.png"), png("b.png"));
    assert_eq!(a, b);
    assert_eq!(&a[..8], b"\x89PNG\r\n\x1a\n");
    // The PNG is the SVG's size: the same picture.
    let doc = svg();
    let parsed = roxmltree::Document::parse(&doc).unwrap();
    let width: u32 = parsed.root_element().attribute("width").unwrap().parse().unwrap();
    let height: u32 = parsed.root_element().attribute("height").unwrap().parse().unwrap();
    assert_eq!(u32::from_be_bytes(a[16..20].try_into().unwrap()), width);
    assert_eq!(u32::from_be_bytes(a[20..24].try_into().unwrap()), height);
    // Every text of the draw.io file's vertices is in the SVG too.
    let xml = drawio();
    let drawn = roxmltree::Document::parse(&xml).unwrap();
    for cell in drawn.descendants().filter(|n| n.attribute("vertex") == Some("1")) {
        for line in cell_attr(cell, "value").unwrap_or("").lines() {
            let escaped = line.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            assert!(
                doc.contains(&format!(">{escaped}<")),
                "`{line}` is in the draw.io file but not the SVG"
            );
        }
    }
}

#[test]
fn committed_diagrams_are_current() {
    for out in ["docs/architecture.drawio", "docs/architecture.svg"] {
        let run = Sluice::new(["diagram", SPECS[0], SPECS[1], "-o", out, "--check"]).run();
        assert_eq!(
            run.code, 0,
            "{out} is stale; regenerate with `sluice diagram {} {} -o {out}`\n{}",
            SPECS[0], SPECS[1], run.stderr
        );
    }
}

#[test]
fn check_fails_after_a_column_is_added_and_passes_after_regenerating() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("rickandmorty.yaml");
    std::fs::copy(root().join(SPECS[1]), &spec).unwrap();
    let out = dir.path().join("arch.drawio");
    let (spec_s, out_s) = (spec.to_str().unwrap(), out.to_str().unwrap());
    Sluice::new(["diagram", spec_s, "-o", out_s]).run().success();
    Sluice::new(["diagram", spec_s, "-o", out_s, "--check"]).run().success();
    let species = "- {name: species, type: text, path: $.species}";
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains(species), "{species} is not in {}", SPECS[1]);
    let text = text.replace(
        species,
        &format!("{species}\n        - {{name: nickname, type: text, path: $.nickname}}"),
    );
    std::fs::write(&spec, text).unwrap();
    let stale = Sluice::new(["diagram", spec_s, "-o", out_s, "--check"])
        .run()
        .failure(1);
    assert!(
        stale.stderr.contains("is out of date with the specs") && stale.stderr.contains("regenerate it with"),
        "{}",
        stale.stderr
    );
    Sluice::new(["diagram", spec_s, "-o", out_s]).run().success();
    Sluice::new(["diagram", spec_s, "-o", out_s, "--check"]).run().success();
    assert!(std::fs::read_to_string(&out).unwrap().contains("nickname: text"));
}

#[test]
fn check_of_a_missing_or_stale_png_says_so_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("arch.png");
    let png_s = png.to_str().unwrap();
    let missing = Sluice::new(["diagram", SPECS[0], "-o", png_s, "--check"])
        .run()
        .failure(1);
    assert!(
        missing.stderr.contains("does not exist; write it with: sluice diagram"),
        "{}",
        missing.stderr
    );
    std::fs::write(&png, b"not this picture").unwrap();
    let stale = Sluice::new(["diagram", SPECS[0], "-o", png_s, "--check"])
        .run()
        .failure(1);
    assert!(
        stale.stderr.contains("a PNG of 16 bytes; the specs draw one of"),
        "{}",
        stale.stderr
    );
    for said in [&missing.stderr, &stale.stderr] {
        assert!(
            !said.contains("PNG\r") && !said.contains('\u{fffd}'),
            "no picture bytes: {said}"
        );
    }
    Sluice::new(["diagram", SPECS[0], "-o", png_s]).run().success();
    Sluice::new(["diagram", SPECS[0], "-o", png_s, "--check"])
        .run()
        .success();
}

#[test]
fn a_single_page_and_an_invalid_spec() {
    let tables = Sluice::new(["diagram", "--page", "tables", SPECS[1]])
        .run()
        .success()
        .stdout;
    assert!(tables.contains("name=\"Tables\"") && !tables.contains("name=\"Pipeline\""));
    let bad = Sluice::new(["diagram", "tests/fixtures/invalid/unknown_column_type.yaml"])
        .run()
        .failure(1);
    assert!(bad.stderr.contains("unknown column type `txt`"), "{}", bad.stderr);
}

#[test]
fn a_local_sqlite_warehouse_is_drawn_as_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("pipelines/rickandmorty.yaml")).unwrap();
    let (head, rest) = text.split_once("runtime:").unwrap();
    let local = dir.path().join("local.yaml");
    std::fs::write(&local, format!("{head}{}", &rest[rest.find("resources:").unwrap()..])).unwrap();
    let xml = Sluice::new(["diagram", local.to_str().unwrap()]).run().success().stdout;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let label = |id: &str| {
        doc.descendants()
            .find(|n| cell_attr(*n, "id") == Some(id))
            .and_then(|n| cell_attr(n, "value"))
            .unwrap_or_else(|| panic!("no cell {id}"))
            .to_string()
    };
    let db = label("rickandmorty-db");
    assert!(
        db.starts_with("SQLite") && db.contains(".sluice/rickandmorty.db") && db.contains("$DATABASE_URL"),
        "{db}"
    );
    assert!(xml.contains("inserts, 1 transaction") && !xml.contains("binary COPY"));
}

#[test]
fn tooltips_carry_column_lineage_and_requests_and_the_table_list_links_to_the_tables_page() {
    let xml = drawio();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let object = |id: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("UserObject") && n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no object {id}"))
    };
    let tip = |id: &str| object(id).attribute("tooltip").unwrap().to_string();
    // A column: its path, transform, reference and description.
    assert_eq!(
        tip("rickandmorty-t-character-c-origin_id"),
        "path $.origin.url → url_last_segment\nreferences location.location_id\nOrigin location; null when unknown"
    );
    // A nested table's key copied from its parent, and sluice's own run id.
    assert!(tip("rickandmorty-t-appearance-c-character_id").starts_with("from_parent character.character_id"));
    assert_eq!(
        tip("rickandmorty-t-appearance-c-_sluice_run_id"),
        "the id of the run that loaded the row (sluice's own)"
    );
    assert!(tip("coincap-t-exchange_snapshot-c-snapshot_time").starts_with("meta run_time"));
    // A table: the request of its resource, and for a nested one the elements it is made of.
    let appearance = tip("rickandmorty-t-appearance");
    assert!(appearance.starts_with("resource character: GET /character; records $.results[*]; next URL $.info.next\none row per element $.episode[*] of each `character` row"), "{appearance}");
    // The API box: every resource's request and pagination.
    let source = tip("rickandmorty-source");
    assert_eq!(source.lines().count(), 3, "{source}");
    assert!(
        source.contains("resource episode: GET /episode; records $.results[*]; next URL $.info.next"),
        "{source}"
    );
    // The table list opens the tables page.
    assert_eq!(
        object("rickandmorty-tables").attribute("link"),
        Some("data:page/id,tables")
    );
    assert!(xml.contains("<diagram id=\"tables\""));
}

#[test]
fn staging_is_drawn_as_what_it_is() {
    let text = std::fs::read_to_string(root().join("pipelines/rickandmorty.yaml")).unwrap();
    let without_runtime = text.replace(
        "runtime:\n  target: aws_lambda\n  region: eu-west-1\n  schedule: rate(1 day)\n",
        "",
    );
    assert_ne!(without_runtime, text);
    let dir = tempfile::tempdir().unwrap();
    let staging_of = |location: &str| {
        let spec = dir.path().join("spec.yaml");
        let body = without_runtime.replace("${SLUICE_STAGING:-file://.sluice/staging}", location);
        std::fs::write(&spec, body).unwrap();
        let xml = Sluice::new(["diagram", spec.to_str().unwrap()]).run().success().stdout;
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let cell = doc
            .descendants()
            .find(|n| n.has_tag_name("mxCell") && cell_attr(*n, "id") == Some("rickandmorty-staging"))
            .unwrap();
        (
            cell_attr(cell, "value").unwrap().to_string(),
            cell.attribute("style").unwrap().contains("mxgraph.aws4.s3"),
        )
    };
    let (label, s3) = staging_of("${SLUICE_STAGING:-file://.sluice/staging}");
    assert!(!s3);
    assert!(
        label.starts_with("staging folder") && label.ends_with("(S3 when $SLUICE_STAGING is s3://…)"),
        "{label}"
    );
    let (label, s3) = staging_of("s3://lake/raw");
    assert!(s3 && label.contains("s3://lake/raw"), "{label}");
    let (label, s3) = staging_of("file:///srv/staging");
    assert!(
        !s3 && label.starts_with("staging folder") && !label.contains("S3"),
        "{label}"
    );
}
