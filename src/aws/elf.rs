//! Just enough ELF to tell whether a binary runs on AWS Lambda's `provided.al2023`: its
//! architecture and the highest glibc symbol version it needs (from `.gnu.version_r`).
//! Read with positioned reads, so a 100 MB debug binary is not loaded whole.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The glibc of Amazon Linux 2023, which `provided.al2023` runs on.
pub const AL2023_GLIBC: [u32; 2] = [2, 34];

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// What a binary needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The Lambda architecture name: `x86_64` or `arm64`.
    pub architecture: &'static str,
    /// The highest `GLIBC_x.y[.z]` version it references (none for a static binary).
    pub glibc: Option<Vec<u32>>,
}

impl Needs {
    /// `2.34`, or `none (static)`.
    pub fn glibc_text(&self) -> String {
        match &self.glibc {
            Some(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join("."),
            None => "none (static)".into(),
        }
    }

    /// Whether Amazon Linux 2023's glibc is new enough.
    pub fn runs_on_al2023(&self) -> bool {
        self.glibc
            .as_ref()
            .is_none_or(|v| v.as_slice() <= AL2023_GLIBC.as_slice())
    }
}

struct Reader {
    file: File,
}

impl Reader {
    fn bytes(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|_| format!("truncated at offset {offset}"))?;
        Ok(buf)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// Read what the binary at `path` needs; an error says why it is not a 64-bit
/// little-endian ELF executable for a Lambda architecture.
pub fn inspect(path: &Path) -> Result<Needs, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let r = Reader { file };
    let not = |why: &str| format!("{} is not a Linux executable for AWS Lambda: {why}", path.display());
    let head = r.bytes(0, 64).map_err(|_| not("too short"))?;
    if &head[..4] != b"\x7fELF" {
        return Err(not("not an ELF file"));
    }
    if head[4] != 2 || head[5] != 1 {
        return Err(not("not 64-bit little-endian"));
    }
    let architecture = match u16_at(&head, 0x12) {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "arm64",
        other => return Err(not(&format!("machine type {other}, neither x86_64 nor arm64"))),
    };
    let (shoff, shentsize, shnum) = (
        u64_at(&head, 0x28),
        u16_at(&head, 0x3a) as u64,
        u16_at(&head, 0x3c) as u64,
    );
    if shentsize < 64 || shnum > 65_535 {
        return Err(not("bad section headers"));
    }
    let sections = r.bytes(shoff, (shentsize * shnum) as usize).map_err(|e| not(&e))?;
    let section = |i: u64| &sections[(i * shentsize) as usize..(i * shentsize + 64) as usize];
    let mut highest: Option<Vec<u32>> = None;
    for i in 0..shnum {
        let sh = section(i);
        if u32_at(sh, 4) != SHT_GNU_VERNEED {
            continue;
        }
        let (offset, size, link, count) = (u64_at(sh, 24), u64_at(sh, 32), u32_at(sh, 40) as u64, u32_at(sh, 44));
        if size > 1 << 20 || link >= shnum {
            return Err(not("bad version section"));
        }
        let table = r.bytes(offset, size as usize).map_err(|e| not(&e))?;
        let strtab = section(link);
        let (str_off, str_size) = (u64_at(strtab, 24), u64_at(strtab, 32));
        if str_size > 64 << 20 {
            return Err(not("bad string table"));
        }
        let strings = r.bytes(str_off, str_size as usize).map_err(|e| not(&e))?;
        let name_at = |at: u32| -> &[u8] {
            let rest = strings.get(at as usize..).unwrap_or_default();
            &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
        };
        // Verneed entries, each with a chain of Vernaux (one per version named).
        let mut need = 0usize;
        for _ in 0..count {
            if need + 16 > table.len() {
                return Err(not("bad version entry"));
            }
            let (cnt, aux, next) = (
                u16_at(&table, need + 2),
                u32_at(&table, need + 8),
                u32_at(&table, need + 12),
            );
            let mut at = need + aux as usize;
            for _ in 0..cnt {
                if at + 16 > table.len() {
                    return Err(not("bad version entry"));
                }
                let name = String::from_utf8_lossy(name_at(u32_at(&table, at + 8))).into_owned();
                if let Some(v) = name.strip_prefix("GLIBC_") {
                    if let Ok(parts) = v.split('.').map(str::parse::<u32>).collect::<Result<Vec<_>, _>>() {
                        if highest.as_ref().is_none_or(|h| parts > *h) {
                            highest = Some(parts);
                        }
                    }
                }
                let step = u32_at(&table, at + 12) as usize;
                if step == 0 {
                    break;
                }
                at += step;
            }
            if next == 0 {
                break;
            }
            need += next as usize;
        }
    }
    Ok(Needs {
        architecture,
        glibc: highest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_read() {
        let me = std::env::current_exe().unwrap();
        let needs = inspect(&me).unwrap();
        assert_eq!(
            needs.architecture,
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "x86_64"
            }
        );
        // Every Rust binary linked against glibc needs at least 2.2.5 (x86_64's first).
        let glibc = needs.glibc.expect("a glibc-linked test binary");
        assert!(glibc.as_slice() >= [2, 2].as_slice(), "{glibc:?}");
        let not_elf = inspect(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))).unwrap_err();
        assert!(not_elf.contains("not an ELF file"), "{not_elf}");
    }
}
