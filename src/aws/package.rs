//! `sluice package`: the zip a `provided.al2023` function runs from — `bootstrap` (a
//! sluice binary that Amazon Linux 2023's glibc can run; its `lambda` command is what
//! Lambda starts), the specs under `pipelines/` and any files included beside them (a CA
//! bundle). The same inputs make the same bytes (fixed entry times), and the zip is named
//! by them (`sluice-lambda-<sha256 12>.zip`), so that a new package is a new `CodeKey`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::elf;

/// What went into a package.
#[derive(Debug)]
pub(crate) struct Packaged {
    pub output: PathBuf,
    pub bootstrap: elf::Needs,
    pub bootstrap_bytes: u64,
    /// The specs and included files, as named in the zip.
    pub specs: Vec<String>,
    pub bytes: u64,
    /// The zip's SHA-256, hex.
    pub sha256: String,
    /// The same, base64: what Lambda reports as a function's `CodeSha256`.
    pub code_sha256: String,
}

/// The zip's name when none is given: its content's.
pub(crate) fn content_name(sha256_hex: &str) -> String {
    format!("sluice-lambda-{}.zip", &sha256_hex[..12])
}

/// Write the zip: the binary at `bootstrap`, the spec files and `include`d files under
/// `pipelines/`, at `output` or, without one, as [`content_name`] in the working
/// directory. The binary must run on Amazon Linux 2023 (glibc ≤ 2.34, x86_64 or arm64).
pub(crate) fn package(
    spec_files: &[String],
    include: &[String],
    bootstrap: &Path,
    output: Option<&Path>,
) -> Result<Packaged, String> {
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
    for f in spec_files.iter().chain(include) {
        let name = Path::new(f)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if names.contains(&name) {
            return Err(format!(
                "two files are named {name}; the package keeps them side by side in pipelines/"
            ));
        }
        if include.contains(f) && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            return Err(format!(
                "{f}: an included file must not end in .yaml or .yml, which the functions read as specs; give specs as arguments"
            ));
        }
        names.push(name);
    }
    // Written beside where it goes (here when it is named by its content), then renamed.
    let dir = match output.and_then(Path::parent) {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let shown = output
        .map(|o| o.display().to_string())
        .unwrap_or_else(|| "the package".into());
    let io = |what: &str, e: &dyn std::fmt::Display| format!("cannot write {shown}: {what}: {e}");
    let temp = crate::util::temp_file_in(&dir).map_err(|e| io("a temporary file beside it", &e))?;
    let mut zip = zip::ZipWriter::new(temp.as_file());
    // Fixed times: the same inputs make the same bytes, so the same name.
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    zip.start_file("bootstrap", deflated.unix_permissions(0o755))
        .map_err(|e| io("bootstrap", &e))?;
    let mut binary = std::fs::File::open(bootstrap).map_err(|e| format!("cannot read {}: {e}", bootstrap.display()))?;
    let bootstrap_bytes = std::io::copy(&mut binary, &mut zip).map_err(|e| io("bootstrap", &e))?;
    for (file, name) in spec_files.iter().chain(include).zip(&names) {
        let text = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        zip.start_file(format!("pipelines/{name}"), deflated.unix_permissions(0o644))
            .map_err(|e| io(name, &e))?;
        zip.write_all(&text).map_err(|e| io(name, &e))?;
    }
    zip.finish().map_err(|e| io("the directory", &e))?;
    let digest = {
        use sha2::Digest;
        let mut file = std::fs::File::open(temp.path()).map_err(|e| io("read it back", &e))?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut crate::util::Sha256Writer(&mut hasher)).map_err(|e| io("read it back", &e))?;
        hasher.finalize()
    };
    let sha256 = hex::encode(digest);
    let output = match output {
        Some(o) => o.to_path_buf(),
        None => dir.join(content_name(&sha256)),
    };
    crate::util::persist(temp, &output).map_err(|e| io("rename", &e))?;
    let bytes = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    Ok(Packaged {
        output,
        bootstrap: needs,
        bootstrap_bytes,
        specs: names,
        bytes,
        code_sha256: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest),
        sha256,
    })
}

/// What a package holds, as `sluice deploy aws --package` checks it.
#[derive(Debug)]
pub(crate) struct Contents {
    /// The zip's file name: the `CodeKey` it is uploaded under (after a prefix).
    pub name: String,
    pub bootstrap: elf::Needs,
    /// The specs under `pipelines/`, by file name, with their bytes.
    pub specs: Vec<(String, Vec<u8>)>,
}

/// Read the package at `path`: its bootstrap's needs and its specs.
pub(crate) fn contents(path: &Path) -> Result<Contents, String> {
    use std::io::Read;
    let bad = |e: &dyn std::fmt::Display| format!("{} is not a package `sluice package` wrote: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(&e))?;
    let bootstrap = {
        let mut entry = zip.by_name("bootstrap").map_err(|e| bad(&e))?;
        let mut temp = tempfile::NamedTempFile::new().map_err(|e| bad(&e))?;
        std::io::copy(&mut entry, temp.as_file_mut()).map_err(|e| bad(&e))?;
        elf::inspect(temp.path())?
    };
    let mut specs = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(&e))?;
        let full = entry.name().map_err(|e| bad(&e))?.into_owned();
        let Some(name) = full.strip_prefix("pipelines/").map(str::to_string) else {
            continue;
        };
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(|e| bad(&e))?;
            specs.push((name, bytes));
        }
    }
    Ok(Contents {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bootstrap,
        specs,
    })
}

/// Whether the package runs exactly these spec files: the differences, said.
pub(crate) fn differences(contents: &Contents, spec_files: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut given = Vec::new();
    for f in spec_files {
        let name = Path::new(f)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match contents.specs.iter().find(|(n, _)| *n == name) {
            None => out.push(format!("{f} is not in it")),
            Some((_, bytes)) if std::fs::read(f).ok().as_ref() != Some(bytes) => {
                out.push(format!("its pipelines/{name} differs from {f}"))
            }
            Some(_) => {}
        }
        given.push(name);
    }
    for (n, _) in &contents.specs {
        if !given.contains(n) {
            out.push(format!("it also runs pipelines/{n}, which was not given"));
        }
    }
    out
}
