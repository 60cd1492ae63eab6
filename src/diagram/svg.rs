//! The SVG writer (the same layout as the draw.io file, drawn directly) and PNG through
//! resvg with a bundled font, so pictures render the same on a machine with no fonts.

use std::fmt::Write;

use super::{Diagram, EdgeKind, LabelAt, Page, Role, Shape, Vertex, LINE};

const FONT: &str = "DejaVu Sans";
const PAGE_GAP: f64 = 30.0;
use super::text::{FONT_BOLD, FONT_REGULAR};

fn esc(s: &str) -> String {
    super::xml_text(s, "\n")
}

fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// A rectangle at (x, y, width, height) with more attributes (fill, stroke, rx).
fn rect(out: &mut String, (x, y, w, h): (f64, f64, f64, f64), attrs: &str) {
    let _ = writeln!(
        out,
        r#"<rect x="{}" y="{}" width="{}" height="{}" {attrs}/>"#,
        n(x),
        n(y),
        n(w),
        n(h)
    );
}

/// Centered (or left-aligned at `x`) lines of text, vertically centered on `cy`.
fn lines(out: &mut String, lines: &[String], x: f64, cy: f64, size: f64, anchor: &str, bold: bool) {
    let first = cy - (lines.len() as f64 - 1.0) * LINE / 2.0 + size * 0.35;
    for (i, l) in lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}"{} fill="#232F3E">{}</text>"##,
            n(x),
            n(first + i as f64 * LINE),
            n(size),
            if bold { r#" font-weight="bold""# } else { "" },
            esc(l)
        );
    }
}

fn vertex(out: &mut String, p: &Page, v: &Vertex) {
    let (x, y) = p.absolute(v);
    let (w, h) = (v.w, v.h);
    let cx = x + w / 2.0;
    let cy = y + h / 2.0;
    match &v.shape {
        Shape::Lane => {
            rect(out, (x, y, w, h), r##"fill="#F7F9FB" stroke="#B0B8C4""##);
            rect(out, (x, y, 30.0, h), r##"fill="#E3E8EF" stroke="#B0B8C4""##);
            let _ = writeln!(
                out,
                r##"<text transform="translate({} {}) rotate(-90)" font-size="14" font-weight="bold" text-anchor="middle" fill="#232F3E">{}</text>"##,
                n(x + 20.0),
                n(cy),
                esc(&v.label.join(" "))
            );
        }
        Shape::Text { size, bold } => {
            let size = *size as f64;
            for (i, l) in v.label.iter().enumerate() {
                let _ = writeln!(
                    out,
                    r##"<text x="{}" y="{}" font-size="{}"{} fill="#232F3E">{}</text>"##,
                    n(x + 4.0),
                    n(y + 4.0 + size + i as f64 * size * 1.3),
                    n(size),
                    if *bold { r#" font-weight="bold""# } else { "" },
                    esc(l)
                );
            }
        }
        Shape::Box { role } | Shape::Swatch { role } => {
            let (fill, stroke) = role.colours();
            rect(out, (x, y, w, h), &format!(r#"rx="8" fill="{fill}" stroke="{stroke}""#));
            lines(out, &v.label, cx, cy, 12.0, "middle", false);
        }
        Shape::Note { role } => {
            let (fill, stroke) = role.colours();
            rect(out, (x, y, w, h), &format!(r#"fill="{fill}" stroke="{stroke}""#));
            lines(out, &v.label, x + 10.0, cy, 12.0, "start", false);
        }
        Shape::Cylinder { role } => {
            let (fill, stroke) = role.colours();
            let _ = writeln!(
                out,
                r#"<path d="M{x0} {y0} a{rx} 10 0 0 0 {w} 0 v{body} a{rx} 10 0 0 1 -{w} 0 z" fill="{fill}" stroke="{stroke}"/><path d="M{x0} {y0} a{rx} 10 0 0 1 {w} 0" fill="none" stroke="{stroke}"/>"#,
                x0 = n(x),
                y0 = n(y + 10.0),
                rx = n(w / 2.0),
                w = n(w),
                body = n(h - 20.0)
            );
            lines(out, &v.label, cx, cy + 5.0, 12.0, "middle", false);
        }
        Shape::Aws { icon } => {
            let (_, colour) = icon.role().colours();
            rect(out, (x, y, w, h), &format!(r#"rx="4" fill="{colour}""#));
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" font-size="18" font-weight="bold" text-anchor="middle" fill="#FFFFFF">{}</text>"##,
                n(cx),
                n(cy + 6.0),
                esc(icon.short())
            );
            let count = v.label.len() as f64;
            match v.label_at {
                LabelAt::Right => lines(out, &v.label, x + w + 6.0, cy, 12.0, "start", false),
                _ => lines(
                    out,
                    &v.label,
                    cx,
                    y - 4.0 - LINE / 2.0 - (count - 1.0) * LINE / 2.0,
                    12.0,
                    "middle",
                    false,
                ),
            }
        }
        Shape::Entity => {
            let (fill, stroke) = Role::Database.colours();
            rect(out, (x, y, w, h), &format!(r##"fill="#FFFFFF" stroke="{stroke}""##));
            rect(out, (x, y, w, 30.0), &format!(r#"fill="{fill}" stroke="{stroke}""#));
            lines(out, &v.label, cx, y + 15.0, 13.0, "middle", true);
        }
        Shape::Row { key } => {
            lines(out, &v.label, x + 8.0, cy, 12.0, "start", *key);
        }
    }
}

/// Points where an edge leaves `a` and enters `b`.
fn route(p: &Page, a: &Vertex, b: &Vertex, kind: EdgeKind) -> Vec<(f64, f64)> {
    let (ax, ay) = p.absolute(a);
    let (bx, by) = p.absolute(b);
    let (acx, acy) = (ax + a.w / 2.0, ay + a.h / 2.0);
    let (bcx, bcy) = (bx + b.w / 2.0, by + b.h / 2.0);
    let horizontal = kind == EdgeKind::Relation || (bcx - acx).abs() > (bcy - acy).abs();
    if horizontal {
        let (sx, tx) = if bcx >= acx { (ax + a.w, bx) } else { (ax, bx + b.w) };
        let mid = (sx + tx) / 2.0;
        if (acy - bcy).abs() < 0.5 {
            vec![(sx, acy), (tx, bcy)]
        } else {
            vec![(sx, acy), (mid, acy), (mid, bcy), (tx, bcy)]
        }
    } else {
        let (sy, ty) = if bcy >= acy { (ay + a.h, by) } else { (ay, by + b.h) };
        vec![(acx, sy), (bcx, ty)]
    }
}

fn edge(out: &mut String, p: &Page, e: &super::Edge) {
    let (Some(a), Some(b)) = (p.vertex(&e.source), p.vertex(&e.target)) else {
        return;
    };
    let pts = match e.route.len() {
        0 => route(p, a, b, e.kind),
        _ => e.route.clone(),
    };
    let d: Vec<String> = pts.iter().map(|(x, y)| format!("{} {}", n(*x), n(*y))).collect();
    let (stroke, extra) = match e.kind {
        EdgeKind::Flow => ("#333333", r#" stroke-width="2" marker-end="url(#arrow)""#),
        EdgeKind::Trigger => ("#E7157B", r#" stroke-dasharray="6 4" marker-end="url(#open)""#),
        EdgeKind::Relation => ("#666666", ""),
    };
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{stroke}"{extra}/>"#,
        d.join(" ")
    );
    if e.kind == EdgeKind::Relation {
        // Crow's foot (many) at the foreign key, two bars (exactly one) at the key.
        let (sx, sy) = pts[0];
        let dir = if pts[1].0 >= sx { 1.0 } else { -1.0 };
        let fx = sx + dir * 12.0;
        let _ = writeln!(
            out,
            r##"<path d="M{} {} L{} {} M{} {} L{} {} M{} {} L{} {}" stroke="#666666" fill="none"/>"##,
            n(fx),
            n(sy),
            n(sx),
            n(sy - 7.0),
            n(fx),
            n(sy),
            n(sx),
            n(sy + 7.0),
            n(fx),
            n(sy),
            n(sx),
            n(sy)
        );
        let (tx, ty) = *pts.last().expect("two points");
        let tdir = if pts[pts.len() - 2].0 >= tx { 1.0 } else { -1.0 };
        for off in [8.0, 13.0] {
            let bx = tx + tdir * off;
            let _ = writeln!(
                out,
                r##"<path d="M{} {} L{} {}" stroke="#666666"/>"##,
                n(bx),
                n(ty - 7.0),
                n(bx),
                n(ty + 7.0)
            );
        }
    }
    if !e.label.is_empty() {
        let (mx, my) = if pts.len() == 2 {
            ((pts[0].0 + pts[1].0) / 2.0, (pts[0].1 + pts[1].1) / 2.0)
        } else {
            ((pts[1].0 + pts[2].0) / 2.0, (pts[1].1 + pts[2].1) / 2.0)
        };
        let w = super::label_width(&e.label, 11.0) + 8.0;
        let h = e.label.len() as f64 * LINE + 4.0;
        rect(out, (mx - w / 2.0, my - h / 2.0, w, h), r##"fill="#FFFFFF""##);
        lines(out, &e.label, mx, my, 11.0, "middle", false);
    }
}

/// Every page, one above the other.
pub(crate) fn render(d: &Diagram) -> String {
    let width = d.pages.iter().map(|p| p.width).fold(0.0, f64::max);
    let height = d.pages.iter().map(|p| p.height).sum::<f64>() + PAGE_GAP * (d.pages.len().saturating_sub(1)) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}, Helvetica, Arial, sans-serif">"#,
        w = n(width),
        h = n(height)
    );
    out.push_str(concat!(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#333333"/></marker>"##,
        r##"<marker id="open" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10" fill="none" stroke="#E7157B"/></marker></defs>"##,
        "\n"
    ));
    let _ = writeln!(
        out,
        r##"<rect width="{}" height="{}" fill="#FFFFFF"/>"##,
        n(width),
        n(height)
    );
    let mut offset = 0.0;
    for p in &d.pages {
        let _ = writeln!(out, r#"<g id="{}" transform="translate(0 {})">"#, esc(&p.id), n(offset));
        for v in &p.vertices {
            vertex(&mut out, p, v);
        }
        for e in &p.edges {
            edge(&mut out, p, e);
        }
        out.push_str("</g>\n");
        offset += p.height + PAGE_GAP;
    }
    out.push_str("</svg>\n");
    out
}

/// Rasterise the SVG with the bundled fonts.
pub(crate) fn png(svg: &str) -> Result<Vec<u8>, String> {
    let mut opt = resvg::usvg::Options {
        font_family: FONT.to_string(),
        ..Default::default()
    };
    opt.fontdb_mut().load_font_data(FONT_REGULAR.to_vec());
    opt.fontdb_mut().load_font_data(FONT_BOLD.to_vec());
    let tree = resvg::usvg::Tree::from_str(svg, &opt).map_err(|e| format!("the SVG does not parse: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the picture has no size")?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| format!("PNG encoding failed: {e}"))
}
