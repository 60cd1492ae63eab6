//! The draw.io writer: an uncompressed `mxfile` that diagrams.net and the VS Code draw.io
//! extension open and edit, one `diagram` per page, ids taken from the model.

use super::{AwsIcon, Diagram, EdgeKind, LabelAt, Page, Role, Shape, Vertex};

fn escape(s: &str) -> String {
    super::xml_text(s, "&#xa;")
}

fn num(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn colours(role: Role) -> String {
    let (fill, stroke) = role.colours();
    format!("fillColor={fill};strokeColor={stroke};")
}

fn aws_style(icon: AwsIcon, at: LabelAt) -> String {
    let (_, colour) = icon.role().colours();
    let position = match at {
        LabelAt::Right => {
            "labelPosition=right;verticalLabelPosition=middle;align=left;verticalAlign=middle;spacingLeft=6;"
        }
        _ => "verticalLabelPosition=top;verticalAlign=bottom;align=center;",
    };
    format!(
        "sketch=0;outlineConnect=0;fontColor=#232F3E;fillColor={colour};strokeColor=#ffffff;dashed=0;{position}html=0;fontSize=12;aspect=fixed;shape=mxgraph.aws4.resourceIcon;resIcon={};",
        icon.res_icon()
    )
}

fn style(v: &Vertex) -> String {
    match &v.shape {
        Shape::Lane => "swimlane;horizontal=0;startSize=30;html=0;whiteSpace=wrap;fillColor=#F7F9FB;strokeColor=#B0B8C4;fontStyle=1;fontSize=14;collapsible=0;container=1;".into(),
        Shape::Text { size, bold } => format!(
            "text;html=0;align=left;verticalAlign=top;whiteSpace=nowrap;fontSize={size};fontStyle={};strokeColor=none;fillColor=none;",
            if *bold { 1 } else { 0 }
        ),
        Shape::Box { role } => format!("rounded=1;whiteSpace=wrap;html=0;arcSize=12;fontSize=12;{}", colours(*role)),
        Shape::Aws { icon } => aws_style(*icon, v.label_at),
        Shape::Cylinder { role } => format!("shape=cylinder3;whiteSpace=wrap;html=0;boundedLbl=1;size=10;fontSize=12;{}", colours(*role)),
        Shape::Note { role } => format!("rounded=0;whiteSpace=wrap;html=0;align=left;spacingLeft=10;fontSize=12;{}", colours(*role)),
        Shape::Swatch { role } => format!("rounded=1;whiteSpace=wrap;html=0;arcSize=20;fontSize=12;{}", colours(*role)),
        Shape::Entity => "swimlane;fontStyle=1;childLayout=stackLayout;horizontal=1;startSize=30;horizontalStack=0;resizeParent=1;resizeParentMax=0;resizeLast=0;collapsible=0;marginBottom=0;html=0;fontSize=13;fillColor=#F5E0F7;strokeColor=#C925D1;".into(),
        Shape::Row { key } => format!(
            "text;strokeColor=none;fillColor=none;align=left;verticalAlign=middle;spacingLeft=8;spacingRight=4;overflow=hidden;points=[[0,0.5],[1,0.5]];portConstraint=eastwest;rotatable=0;html=0;fontSize=12;fontStyle={};",
            if *key { 1 } else { 0 }
        ),
    }
}

/// The look of a relation's ends: crow's foot (many) at the foreign key, one at the key.
macro_rules! relation_ends {
    () => {
        "html=0;endArrow=ERmandOne;startArrow=ERmany;endFill=0;startFill=0;strokeColor=#666666;"
    };
}

fn edge_style(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Flow => "edgeStyle=orthogonalEdgeStyle;rounded=0;html=0;endArrow=block;endFill=1;strokeWidth=2;strokeColor=#333333;fontSize=11;labelBackgroundColor=#FFFFFF;exitX=1;exitY=0.5;exitDx=0;exitDy=0;entryX=0;entryY=0.5;entryDx=0;entryDy=0;",
        EdgeKind::Trigger => "edgeStyle=orthogonalEdgeStyle;rounded=0;html=0;endArrow=open;endFill=0;dashed=1;strokeColor=#E7157B;fontSize=11;labelBackgroundColor=#FFFFFF;",
        EdgeKind::Relation => concat!("edgeStyle=entityRelationEdgeStyle;", relation_ends!()),
    }
}

fn page(p: &Page, out: &mut String) {
    out.push_str(&format!(
        "  <diagram id=\"{}\" name=\"{}\">\n",
        escape(&p.id),
        escape(&p.name)
    ));
    out.push_str(&format!(
        "    <mxGraphModel dx=\"{w}\" dy=\"{h}\" grid=\"1\" gridSize=\"10\" guides=\"1\" tooltips=\"1\" connect=\"1\" arrows=\"1\" fold=\"1\" page=\"1\" pageScale=\"1\" pageWidth=\"{w}\" pageHeight=\"{h}\" math=\"0\" shadow=\"0\">\n      <root>\n",
        w = num(p.width),
        h = num(p.height)
    ));
    let layer = format!("{}-layer", p.id);
    out.push_str(&format!("        <mxCell id=\"{}-root\"/>\n", p.id));
    out.push_str(&format!("        <mxCell id=\"{layer}\" parent=\"{}-root\"/>\n", p.id));
    for v in &p.vertices {
        let parent = v.parent.clone().unwrap_or_else(|| layer.clone());
        let geometry = format!(
            "<mxGeometry x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" as=\"geometry\"/>",
            num(v.x),
            num(v.y),
            num(v.w),
            num(v.h)
        );
        if v.tooltip.is_none() && v.link.is_none() {
            out.push_str(&format!(
                "        <mxCell id=\"{}\" value=\"{}\" style=\"{}\" vertex=\"1\" parent=\"{}\">\n          {geometry}\n        </mxCell>\n",
                escape(&v.id),
                escape(&v.label.join("\n")),
                style(v),
                escape(&parent),
            ));
            continue;
        }
        // A tooltip or a link: draw.io keeps them on an object around the cell.
        let attr = |name: &str, value: &Option<String>| {
            value
                .as_ref()
                .map(|t| format!(" {name}=\"{}\"", escape(t)))
                .unwrap_or_default()
        };
        out.push_str(&format!(
            "        <UserObject id=\"{}\" label=\"{}\"{}{}>\n          <mxCell style=\"{}\" vertex=\"1\" parent=\"{}\">\n            {geometry}\n          </mxCell>\n        </UserObject>\n",
            escape(&v.id),
            escape(&v.label.join("\n")),
            attr("tooltip", &v.tooltip),
            attr("link", &v.link),
            style(v),
            escape(&parent),
        ));
    }
    for e in &p.edges {
        // Edges join vertices in different lanes or entities: they live on the layer.
        let (style, geometry) = match e.route.as_slice() {
            [first, middle @ .., last] if e.kind == EdgeKind::Relation => {
                // A routed relation: where it leaves and enters its rows, and its bends.
                let row = |id: &str| p.vertex(id).map(|v| (p.absolute(v), v.w, v.h));
                let (Some(((sx, sy), sw, sh)), Some(((tx, ty), tw, th))) = (row(&e.source), row(&e.target)) else {
                    continue;
                };
                let style = format!(
                    concat!(
                        "edgeStyle=orthogonalEdgeStyle;rounded=0;",
                        relation_ends!(),
                        "exitX={};exitY={};exitDx=0;exitDy=0;entryX={};entryY={};entryDx=0;entryDy=0;"
                    ),
                    num(((first.0 - sx) / sw).clamp(0.0, 1.0)),
                    num(((first.1 - sy) / sh).clamp(0.0, 1.0)),
                    num(((last.0 - tx) / tw).clamp(0.0, 1.0)),
                    num(((last.1 - ty) / th).clamp(0.0, 1.0)),
                );
                let points: String = middle
                    .iter()
                    .map(|(x, y)| format!("<mxPoint x=\"{}\" y=\"{}\"/>", num(*x), num(*y)))
                    .collect();
                (
                    style,
                    format!(
                        "<mxGeometry relative=\"1\" as=\"geometry\"><Array as=\"points\">{points}</Array></mxGeometry>"
                    ),
                )
            }
            _ => (
                edge_style(e.kind).to_string(),
                "<mxGeometry relative=\"1\" as=\"geometry\"/>".to_string(),
            ),
        };
        out.push_str(&format!(
            "        <mxCell id=\"{}\" value=\"{}\" style=\"{style}\" edge=\"1\" parent=\"{layer}\" source=\"{}\" target=\"{}\">\n          {geometry}\n        </mxCell>\n",
            escape(&e.id),
            escape(&e.label.join("\n")),
            escape(&e.source),
            escape(&e.target)
        ));
    }
    out.push_str("      </root>\n    </mxGraphModel>\n  </diagram>\n");
}

/// The whole file.
pub(crate) fn render(d: &Diagram) -> String {
    let mut out = String::from("<mxfile host=\"sluice\" agent=\"sluice\" version=\"1\">\n");
    for p in &d.pages {
        page(p, &mut out);
    }
    out.push_str("</mxfile>\n");
    out
}
