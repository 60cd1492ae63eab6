//! `sluice package`: the zip a `provided.al2023` function runs from — `bootstrap` (a
//! sluice binary that Amazon Linux 2023's glibc can run; its `lambda` command is what
//! Lambda starts) and the specs under `pipelines/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::elf;

/// What went into a package.
#[derive(Debug)]
pub struct Packaged {
    pub output: PathBuf,
    pub bootstrap: elf::Needs,
    pub bootstrap_bytes: u64,
    /// The specs, as named in the zip.
    pub specs: Vec<String>,
    pub bytes: u64,
}

/// Write the zip at `output`: the binary at `bootstrap` and the spec files. The binary
/// must run on Amazon Linux 2023 (glibc ≤ 2.34, x86_64 or arm64).
pub fn package(spec_files: &[String], bootstrap: &Path, output: &Path) -> Result<Packaged, String> {
    let needs = elf::inspect(bootstrap)?;
    if !needs.runs_on_al2023() {
        return Err(format!(
            "{} needs glibc {}, but AWS Lambda's provided.al2023 has {}.{}; build one for it with \
             `cargo zigbuild --release --target x86_64-unknown-linux-gnu.2.34` (pip install cargo-zigbuild ziglang) \
             and pass it with --bootstrap target/x86_64-unknown-linux-gnu/release/sluice",
            bootstrap.display(),
            needs.glibc_text(),
            elf::AL2023_GLIBC[0],
            elf::AL2023_GLIBC[1],
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for f in spec_files {
        let name = Path::new(f)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if names.contains(&name) {
            return Err(format!(
                "two specs are named {name}; the package keeps them side by side in pipelines/"
            ));
        }
        names.push(name);
    }
    let io = |what: &str, e: &dyn std::fmt::Display| format!("cannot write {}: {what}: {e}", output.display());
    let temp = crate::util::temp_file_beside(output).map_err(|e| io("a temporary file beside it", &e))?;
    let mut zip = zip::ZipWriter::new(temp.as_file());
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("bootstrap", deflated.unix_permissions(0o755))
        .map_err(|e| io("bootstrap", &e))?;
    let mut binary = std::fs::File::open(bootstrap).map_err(|e| format!("cannot read {}: {e}", bootstrap.display()))?;
    let bootstrap_bytes = std::io::copy(&mut binary, &mut zip).map_err(|e| io("bootstrap", &e))?;
    for (file, name) in spec_files.iter().zip(&names) {
        let text = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        zip.start_file(format!("pipelines/{name}"), deflated.unix_permissions(0o644))
            .map_err(|e| io(name, &e))?;
        zip.write_all(&text).map_err(|e| io(name, &e))?;
    }
    zip.finish().map_err(|e| io("the directory", &e))?;
    crate::util::persist(temp, output).map_err(|e| io("rename", &e))?;
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(Packaged {
        output: output.to_path_buf(),
        bootstrap: needs,
        bootstrap_bytes,
        specs: names,
        bytes,
    })
}
