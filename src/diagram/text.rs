//! Text measuring: how wide a label is drawn in the bundled fonts, and how labels are
//! wrapped and shortened to fit.

/// Line height of labels, in pixels.
pub const LINE: f64 = 15.0;

/// The bundled fonts: pictures render with them, and text is measured with their metrics.
pub(crate) static FONT_REGULAR: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
pub(crate) static FONT_BOLD: &[u8] = include_bytes!("../../assets/DejaVuSans-Bold.ttf");

/// A font's character map and advance widths at 1 px.
struct Metrics {
    charmap: skrifa::charmap::Charmap<'static>,
    widths: skrifa::metrics::GlyphMetrics<'static>,
}

fn metrics(bold: bool) -> Option<&'static Metrics> {
    use skrifa::MetadataProvider;
    static FONTS: std::sync::OnceLock<[Option<Metrics>; 2]> = std::sync::OnceLock::new();
    let load = |data: &'static [u8]| {
        let font = skrifa::FontRef::new(data).ok()?;
        Some(Metrics {
            charmap: font.charmap(),
            widths: font.glyph_metrics(
                skrifa::instance::Size::new(1.0),
                skrifa::instance::LocationRef::default(),
            ),
        })
    };
    FONTS.get_or_init(|| [load(FONT_REGULAR), load(FONT_BOLD)])[bold as usize].as_ref()
}

/// How wide `text` is drawn at `size` px in the bundled font (DejaVu Sans, which is wider
/// than draw.io's Helvetica, so boxes sized by it hold their text there too).
pub fn text_width_styled(text: &str, size: f64, bold: bool) -> f64 {
    let Some(m) = metrics(bold) else {
        return text.chars().count() as f64 * 0.65 * size;
    };
    text.chars()
        .map(|c| {
            m.charmap
                .map(c)
                .and_then(|g| m.widths.advance_width(g))
                .map(f64::from)
                .unwrap_or(0.65)
        })
        .sum::<f64>()
        * size
}

/// [`text_width_styled`] in the regular weight.
pub fn text_width(text: &str, size: f64) -> f64 {
    text_width_styled(text, size, false)
}

pub fn label_width(lines: &[String], size: f64) -> f64 {
    label_width_styled(lines, size, false)
}

/// The widest of `lines`, regular or bold.
pub fn label_width_styled(lines: &[String], size: f64, bold: bool) -> f64 {
    lines
        .iter()
        .map(|l| text_width_styled(l, size, bold))
        .fold(0.0, f64::max)
}

/// The longest word a label keeps whole (an SQL identifier has at most 63 characters);
/// the layout makes room for it.
const WHOLE_WORD: usize = 64;

/// Split text into lines of at most `max` characters: at spaces, else at slashes. A
/// longer word stays whole up to [`WHOLE_WORD`] characters, and is cut beyond.
pub(crate) fn wrap(text: &str, max: usize) -> Vec<String> {
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
pub(super) fn shorten(lines: &mut Vec<String>, n: usize) {
    if lines.len() > n {
        lines.truncate(n);
        if let Some(last) = lines.last_mut() {
            last.push_str(" …");
        }
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
