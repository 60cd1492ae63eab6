//! The PostgreSQL binary wire encoding of typed cells (the format of binary COPY).

use crate::value::Cell;

const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120; // 2000-01-01
const PG_EPOCH_MICROS_FROM_UNIX: i64 = 946_684_800_000_000;

impl Cell {
    /// Append the field to a binary COPY row: a 4-byte length (-1 for null) and the bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Cell::Null => {
                out.truncate(start);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                return;
            }
            Cell::Text(s) => out.extend_from_slice(s.as_bytes()),
            Cell::Int(n) => out.extend_from_slice(&n.to_be_bytes()),
            Cell::Big(n) => out.extend_from_slice(&n.to_be_bytes()),
            Cell::Double(f) => out.extend_from_slice(&f.to_be_bytes()),
            Cell::Bool(b) => out.push(u8::from(*b)),
            Cell::Date(d) => {
                use chrono::Datelike;
                out.extend_from_slice(&(d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE).to_be_bytes())
            }
            Cell::Time(t) => out.extend_from_slice(&(t.timestamp_micros() - PG_EPOCH_MICROS_FROM_UNIX).to_be_bytes()),
            Cell::Json(s) => {
                out.push(1);
                out.extend_from_slice(s.as_bytes());
            }
            Cell::Numeric(s) => encode_numeric(s, out),
        }
        let len = (out.len() - start - 4) as i32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// PostgreSQL `numeric` binary format: base-10000 digits, weight, sign, display scale.
fn encode_numeric(s: &str, out: &mut Vec<u8>) {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let dscale = frac.len() as u16;
    // Pad the integer part on the left and the fraction on the right to groups of four.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let digits_text: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = digits_text
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
    // Strip leading and trailing zero groups (they carry no information).
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_encoding_matches_postgres() {
        // Reference bytes as PostgreSQL's numeric_send writes them.
        let enc = |s: &str| {
            let mut v = Vec::new();
            encode_numeric(s, &mut v);
            v
        };
        // 12345.678: groups [1, 2345, 6780], weight 1, dscale 3.
        assert_eq!(enc("12345.678"), [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]);
        // 0.0001: one group [1], weight -1, dscale 4.
        assert_eq!(enc("0.0001"), [0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]);
        // -5: sign 0x4000.
        assert_eq!(enc("-5"), [0, 1, 0, 0, 0x40, 0, 0, 0, 0, 5]);
        // 0 with scale 2.
        assert_eq!(enc("0.00"), [0, 0, 0, 0, 0, 0, 0, 2]);
    }
}
