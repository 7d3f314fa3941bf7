//! `input_file`: a file inside the storage root, named by its storage-relative
//! path (what tasks list) or an absolute path inside the root. Anything that
//! resolves elsewhere (`..`, other absolute paths, symlinks pointing out) is
//! refused, as are non-regular files.

use crate::Code;
use std::path::{Path, PathBuf};

use super::ValidationError;
use crate::storage::StorageLayout;

const FIELD: &str = "input_file";
const NOT_OURS: &str =
    "no such file in the storage root (a path relative to it, e.g. downloads/<task_id>/<name>)";

/// A regular file inside the storage root, canonicalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPath {
    /// Relative to the storage root, as stored in tasks.
    pub relative: String,
    pub absolute: PathBuf,
}

fn refused(message: &str) -> ValidationError {
    ValidationError::new(FIELD, Code::InvalidInputFile, message)
}

impl MediaPath {
    pub async fn resolve(layout: &StorageLayout, raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(refused("is required"));
        }
        if raw.len() > 1024 || raw.chars().any(char::is_control) {
            return Err(refused("is not a valid path"));
        }
        let given = Path::new(raw);
        let candidate = if given.is_absolute() { given.to_path_buf() } else { layout.root().join(given) };
        let root = tokio::fs::canonicalize(layout.root())
            .await
            .map_err(|_| refused("storage root is not available"))?;
        // One answer for "missing", "outside the root" and "not a regular file",
        // so the refusal says nothing about what exists outside the root.
        let not_ours = || refused(NOT_OURS);
        let real = tokio::fs::canonicalize(&candidate).await.map_err(|_| not_ours())?;
        let rel = real.strip_prefix(&root).map_err(|_| not_ours())?;
        let meta = tokio::fs::metadata(&real).await.map_err(|_| not_ours())?;
        if !meta.is_file() {
            return Err(not_ours());
        }
        let relative = rel.to_str().ok_or_else(|| refused("is not valid UTF-8"))?.to_owned();
        Ok(MediaPath { relative, absolute: real })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn setup() -> (tempfile::TempDir, StorageLayout) {
        let dir = tempfile::tempdir().expect("temp");
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("downloads/a")).expect("dirs");
        std::fs::write(root.join("downloads/a/v.mp4"), b"x").expect("file");
        std::fs::write(dir.path().join("secret.txt"), b"s").expect("secret");
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("downloads/a/link.mp4"))
            .expect("symlink");
        std::os::unix::fs::symlink(root.join("downloads/a/v.mp4"), root.join("inside.mp4")).expect("symlink");
        let layout = StorageLayout::new(&root).expect("layout");
        (dir, layout)
    }

    #[tokio::test]
    async fn files_inside_the_root_resolve() {
        let (_d, layout) = setup().await;
        let p = MediaPath::resolve(&layout, "downloads/a/v.mp4").await.expect("inside");
        assert_eq!(p.relative, "downloads/a/v.mp4");
        let abs = layout.root().join("downloads/a/v.mp4");
        assert_eq!(
            MediaPath::resolve(&layout, abs.to_str().expect("utf8")).await.expect("abs inside").relative,
            p.relative
        );
        assert_eq!(
            MediaPath::resolve(&layout, "inside.mp4").await.expect("link inside").relative,
            p.relative
        );
    }

    #[tokio::test]
    async fn escapes_are_refused() {
        let (d, layout) = setup().await;
        let outside = d.path().join("secret.txt");
        for raw in [
            "/etc/passwd",
            "../secret.txt",
            "../../x",
            "downloads/a/link.mp4",
            "downloads/a",
            "",
            outside.to_str().expect("utf8"),
        ] {
            let err = MediaPath::resolve(&layout, raw).await.expect_err(raw);
            assert_eq!(err.field, "input_file", "{raw}");
            if !raw.is_empty() {
                assert_eq!(err.message, NOT_OURS, "{raw}: one message, existing or not");
            }
        }
        // An outside file that exists and one that does not get the same answer.
        let missing = d.path().join("missing.txt");
        let a = MediaPath::resolve(&layout, outside.to_str().expect("utf8")).await.expect_err("outside");
        let b = MediaPath::resolve(&layout, missing.to_str().expect("utf8")).await.expect_err("missing");
        assert_eq!(a, b);
    }
}
