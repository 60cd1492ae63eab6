//! Just enough ELF to tell whether a binary runs on AWS Lambda's `provided.al2023`: its
//! architecture and the highest glibc symbol version it needs. Read with the `object`
//! crate from the program headers — the dynamic segment's `DT_VERNEED` table, what the
//! loader itself reads — so a binary whose section headers were stripped is still read
//! right, and through a read cache, so a 100 MB debug binary is not loaded whole.

use std::fs::File;
use std::path::Path;

use object::elf::{
    FileHeader64, DT_NEEDED, DT_STRSZ, DT_STRTAB, DT_VERNEED, DT_VERNEEDNUM, EM_AARCH64, EM_X86_64, PT_DYNAMIC,
    PT_INTERP, PT_LOAD,
};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{LittleEndian, ReadCache, ReadRef};

/// The glibc of Amazon Linux 2023, which `provided.al2023` runs on.
pub(crate) const AL2023_GLIBC: [u32; 2] = [2, 34];

/// What a binary needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needs {
    /// The Lambda architecture name: `x86_64` or `arm64`.
    pub architecture: &'static str,
    /// Whether it is linked dynamically (it names an interpreter or shared libraries).
    pub dynamic: bool,
    /// The highest `GLIBC_x.y[.z]` version it references (none for a static binary).
    pub glibc: Option<Vec<u32>>,
}

impl Needs {
    /// `2.34`, or `none (static)`.
    pub(crate) fn glibc_text(&self) -> String {
        match (&self.glibc, self.dynamic) {
            (Some(v), _) => v.iter().map(u32::to_string).collect::<Vec<_>>().join("."),
            (None, false) => "none (static)".into(),
            (None, true) => "an unknown version (linked dynamically, but naming no glibc version)".into(),
        }
    }

    /// Whether Amazon Linux 2023's glibc is new enough. A dynamic binary that names no
    /// glibc version cannot be told to run, so it does not.
    pub(crate) fn runs_on_al2023(&self) -> bool {
        match &self.glibc {
            Some(v) => v.as_slice() <= AL2023_GLIBC.as_slice(),
            None => !self.dynamic,
        }
    }
}

/// Read what the binary at `path` needs; an error says why it is not a 64-bit
/// little-endian ELF executable for a Lambda architecture.
pub(crate) fn inspect(path: &Path) -> Result<Needs, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let cache = ReadCache::new(file);
    let data = &cache;
    let not = |why: &str| format!("{} is not a Linux executable for AWS Lambda: {why}", path.display());
    let magic = data.read_bytes_at(0, 6).map_err(|_| not("too short"))?;
    if &magic[..4] != b"\x7fELF" {
        return Err(not("not an ELF file"));
    }
    if magic[4] != 2 || magic[5] != 1 {
        return Err(not("not 64-bit little-endian"));
    }
    let header = FileHeader64::<LittleEndian>::parse(data).map_err(|e| not(&e.to_string()))?;
    let endian = header.endian().map_err(|e| not(&e.to_string()))?;
    let architecture = match header.e_machine(endian) {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "arm64",
        other => return Err(not(&format!("machine type {other}, neither x86_64 nor arm64"))),
    };
    let segments = header.program_headers(endian, data).map_err(|e| not(&e.to_string()))?;
    let interp = segments.iter().any(|s| s.p_type(endian) == PT_INTERP);
    let dynamic = segments
        .iter()
        .find(|s| s.p_type(endian) == PT_DYNAMIC)
        .map(|s| s.dynamic(endian, data))
        .transpose()
        .map_err(|e| not(&e.to_string()))?
        .flatten()
        .unwrap_or_default();
    let value = |tag: i64| dynamic.iter().find(|d| d.d_tag(endian) == tag).map(|d| d.d_val(endian));
    let linked = interp || dynamic.iter().any(|d| d.d_tag(endian) == DT_NEEDED);
    // A virtual address of the dynamic table, as an offset in the file.
    let offset = |address: u64| {
        segments.iter().filter(|s| s.p_type(endian) == PT_LOAD).find_map(|s| {
            let (vaddr, filesz) = (s.p_vaddr(endian), s.p_filesz(endian));
            (address >= vaddr && address - vaddr < filesz)
                .then(|| (s.p_offset(endian) + (address - vaddr), filesz - (address - vaddr)))
        })
    };
    let (Some(verneed), Some(count), Some(strtab), Some(strsz)) = (
        value(DT_VERNEED),
        value(DT_VERNEEDNUM),
        value(DT_STRTAB),
        value(DT_STRSZ),
    ) else {
        return Ok(Needs {
            architecture,
            dynamic: linked,
            glibc: None,
        });
    };
    let bad = |what: &str| not(&format!("bad {what} in the dynamic segment"));
    let (str_off, _) = offset(strtab).ok_or_else(|| bad("string table address"))?;
    if strsz > 64 << 20 {
        return Err(bad("string table size"));
    }
    let strings = data.read_bytes_at(str_off, strsz).map_err(|_| bad("string table"))?;
    let (need_off, left) = offset(verneed).ok_or_else(|| bad("version table address"))?;
    let table = data
        .read_bytes_at(need_off, left.min(1 << 20))
        .map_err(|_| bad("version table"))?;
    let highest = highest_glibc(table, strings, count).ok_or_else(|| bad("version table"))?;
    Ok(Needs {
        architecture,
        dynamic: linked,
        glibc: highest,
    })
}

/// The highest `GLIBC_` version the `count` Verneed entries of `table` name (each with a
/// chain of Vernaux, one per version); none when the table is malformed.
fn highest_glibc(table: &[u8], strings: &[u8], count: u64) -> Option<Option<Vec<u32>>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(table.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(table.get(at..at + 4)?.try_into().ok()?));
    let name_at = |at: u32| {
        let rest = strings.get(at as usize..).unwrap_or_default();
        String::from_utf8_lossy(&rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]).into_owned()
    };
    let mut highest: Option<Vec<u32>> = None;
    let mut need = 0usize;
    for _ in 0..count.min(1 << 16) {
        let (cnt, aux, next) = (u16_at(need + 2)?, u32_at(need + 8)?, u32_at(need + 12)?);
        let mut at = need + aux as usize;
        for _ in 0..cnt {
            let name = name_at(u32_at(at + 8)?);
            if let Some(v) = name.strip_prefix("GLIBC_") {
                if let Ok(parts) = v.split('.').map(str::parse::<u32>).collect::<Result<Vec<_>, _>>() {
                    if highest.as_ref().is_none_or(|h| parts > *h) {
                        highest = Some(parts);
                    }
                }
            }
            match u32_at(at + 12)? {
                0 => break,
                step => at += step as usize,
            }
        }
        match next {
            0 => break,
            step => need += step as usize,
        }
    }
    Some(highest)
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
        let glibc = needs.glibc.clone().expect("a glibc-linked test binary");
        assert!(glibc.as_slice() >= [2, 2].as_slice(), "{glibc:?}");
        let not_elf = inspect(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))).unwrap_err();
        assert!(not_elf.contains("not an ELF file"), "{not_elf}");
        assert!(needs.dynamic && needs.runs_on_al2023() == (glibc.as_slice() <= [2, 34].as_slice()));
    }

    #[test]
    fn a_binary_without_section_headers_is_read_the_same() {
        // The section headers zeroed (e_shoff, e_shnum, e_shstrndx), as `strip` tools can:
        // the loader does not need them, and neither does this check.
        let me = std::env::current_exe().unwrap();
        let mut bytes = std::fs::read(&me).unwrap();
        bytes[0x28..0x30].fill(0);
        bytes[0x3c..0x40].fill(0);
        let dir = tempfile::tempdir().unwrap();
        let stripped = dir.path().join("stripped");
        std::fs::write(&stripped, &bytes).unwrap();
        assert_eq!(inspect(&stripped).unwrap(), inspect(&me).unwrap());
        // Nor is a dynamic binary without version needs taken as static.
        let needs = Needs {
            architecture: "x86_64",
            dynamic: true,
            glibc: None,
        };
        assert!(!needs.runs_on_al2023());
        assert!(needs.glibc_text().contains("unknown version"), "{}", needs.glibc_text());
    }
}
