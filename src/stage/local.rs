//! Local-folder staging. Parts are written to `<root>/.tmp/` and hard-linked into place,
//! which is atomic and refuses to replace an existing object.

use std::path::{Path, PathBuf};

use super::{Backend, LocalObject, StageError};

/// How deep a listing walks below the folder it starts in.
const MAX_DEPTH: usize = 64;

pub struct LocalStaging {
    root: PathBuf,
}

impl LocalStaging {
    pub fn new(root: &Path) -> Result<Self, StageError> {
        std::fs::create_dir_all(root).map_err(|e| StageError::io("create staging folder", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| StageError::io("open staging folder", root, e))?;
        let tmp = root.join(".tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| StageError::io("create", &tmp, e))?;
        // Parts a killed extraction was writing.
        crate::util::sweep_orphans(&tmp);
        Ok(LocalStaging { root })
    }

    /// The file of `key`. Local staging never follows a symbolic link: a key whose path
    /// passes through one (or is one) is refused, so nothing outside the folder is read,
    /// written or removed.
    fn path(&self, key: &str) -> Result<PathBuf, StageError> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|s| s == ".." || s == "." || s.is_empty()) {
            return Err(StageError::Config(format!("`{key}` is not a valid object key")));
        }
        let mut path = self.root.clone();
        for segment in key.split('/') {
            path.push(segment);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StageError::Config(format!(
                        "`{}` is a symbolic link; local staging never follows links, so object `{key}` is refused",
                        path.display()
                    )))
                }
                Ok(_) => {}
                // What does not exist yet is no link.
                Err(_) => break,
            }
        }
        Ok(self.root.join(key))
    }

    fn place(&self, key: &str, tmp: &Path) -> Result<(), StageError> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StageError::io("create folder", parent, e))?;
        }
        // A hard link is atomic and fails if the destination exists: no object is ever
        // half-visible or overwritten.
        std::fs::hard_link(tmp, &dest).map_err(|e| StageError::io("publish staged object", &dest, e))?;
        std::fs::remove_file(tmp).map_err(|e| StageError::io("remove temporary file", tmp, e))
    }
}

impl Backend for LocalStaging {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StageError> {
        if path.starts_with(self.work_dir()) {
            return self.place(key, path);
        }
        let tmp = crate::util::temp_file_in(&self.work_dir())
            .map_err(|e| StageError::io("create temporary file", &self.work_dir(), e))?;
        std::fs::copy(path, tmp.path()).map_err(|e| StageError::io("copy", path, e))?;
        let tmp = tmp.into_temp_path();
        self.place(key, &tmp)?;
        let _ = tmp.keep();
        Ok(())
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StageError> {
        let mut tmp = crate::util::temp_file_in(&self.work_dir())
            .map_err(|e| StageError::io("create temporary file", &self.work_dir(), e))?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| StageError::io("write", tmp.path(), e))?;
        let tmp = tmp.into_temp_path();
        self.place(key, &tmp)?;
        let _ = tmp.keep();
        Ok(())
    }

    async fn probe(&self, _pipeline: &str, write: bool) -> Result<(), StageError> {
        std::fs::read_dir(&self.root).map_err(|e| StageError::io("read staging folder", &self.root, e))?;
        if write {
            let dir = self.work_dir();
            let probe =
                crate::util::temp_file_in(&dir).map_err(|e| StageError::io("write a probe file in", &dir, e))?;
            probe
                .close()
                .map_err(|e| StageError::io("remove a probe file in", &dir, e))?;
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StageError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StageError::io("remove", &path, e)),
        }
        // Folders the object's key made, when nothing else is left in them.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StageError> {
        let path = self.path(key)?;
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StageError::NotFound { key: key.to_string() },
            _ => StageError::io("read", &path, e),
        })
    }

    async fn open(&self, key: &str) -> Result<LocalObject, StageError> {
        let path = self.path(key)?;
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(StageError::NotFound { key: key.to_string() });
        }
        Ok(LocalObject::borrowed(path))
    }

    async fn verify(&self, object: &super::manifest::ObjectManifest) -> Result<(), String> {
        use sha2::Digest;
        let path = self.path(&object.key).map_err(|e| e.to_string())?;
        let mut file = std::fs::File::open(&path).map_err(|e| format!("cannot be opened ({e})"))?;
        let mut hash = sha2::Sha256::new();
        let bytes = std::io::copy(&mut file, &mut crate::util::Sha256Writer(&mut hash))
            .map_err(|e| format!("cannot be read ({e})"))?;
        if bytes != object.bytes {
            return Err(format!("holds {bytes} bytes, not the {} staged", object.bytes));
        }
        if hex::encode(hash.finalize()) != object.sha256 {
            return Err("does not have the SHA-256 it was staged with".into());
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        // Walk only below the deepest folder the prefix names.
        let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        // The start itself must be a real folder inside the root, not a link out of it.
        if !dir_part.is_empty() && self.path(dir_part).is_err() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Links are neither followed nor listed, so the walk is a tree walk: it ends. The
        // depth bound is a second guard against a folder tree no run would make.
        let mut stack = vec![(start, 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StageError::io("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StageError::io("list", &dir, e))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| StageError::io("list", &path, e))?;
                if path == self.work_dir() || kind.is_symlink() {
                    continue;
                }
                if kind.is_dir() {
                    if depth >= MAX_DEPTH {
                        return Err(StageError::Config(format!(
                            "`{}` is more than {MAX_DEPTH} folders deep; no key template makes that",
                            path.display()
                        )));
                    }
                    stack.push((path, depth + 1));
                } else if !kind.is_file() {
                    continue;
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn work_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
