//! Where files live under the storage root. Each task writes only into its own
//! folder, so no task can ever list (or be given) another task's file.

use std::path::{Component, Path, PathBuf};

use uuid::Uuid;

/// The storage root and the per-task folder layout beneath it.
#[derive(Debug, Clone)]
pub struct StorageLayout {
    root: PathBuf,
}

impl StorageLayout {
    /// `root` is made absolute (against the working directory) so paths handed to
    /// child processes stay right whatever their working directory is.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = std::path::absolute(root.as_ref())?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `downloads/<task_id>` under the root.
    pub fn download_dir(&self, task_id: Uuid) -> PathBuf {
        self.root.join("downloads").join(task_id.to_string())
    }

    /// `processed/<task_id>` under the root.
    pub fn processed_dir(&self, task_id: Uuid) -> PathBuf {
        self.root.join("processed").join(task_id.to_string())
    }

    /// The storage-relative form of `path`, if it lies inside the root (lexically;
    /// callers pass paths they created or canonicalised).
    pub fn relative(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            rel.to_str().map(str::to_owned)
        } else {
            None
        }
    }

    /// The absolute path of a storage-relative path recorded in a task.
    pub fn resolve(&self, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            Some(self.root.join(rel))
        } else {
            None
        }
    }
}

/// Free bytes (for unprivileged users) on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_reported() {
        assert!(free_bytes(Path::new("/")).expect("statvfs") > 0);
    }

    #[test]
    fn relative_paths_stay_inside_the_root() {
        let layout = StorageLayout::new("/srv/media").expect("absolute");
        let id = Uuid::nil();
        let file = layout.download_dir(id).join("a.mp4");
        assert_eq!(
            layout.relative(&file).as_deref(),
            Some("downloads/00000000-0000-0000-0000-000000000000/a.mp4")
        );
        assert_eq!(layout.relative(Path::new("/etc/passwd")), None);
        assert_eq!(layout.relative(Path::new("/srv/media/../etc/passwd")), None);
        assert_eq!(layout.resolve("../x"), None);
        assert_eq!(layout.resolve("/etc/passwd"), None);
        assert_eq!(layout.resolve("downloads/x/a.mp4"), Some(PathBuf::from("/srv/media/downloads/x/a.mp4")));
    }
}
