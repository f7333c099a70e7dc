//! A small file system of a test's own (tmpfs), to fill up: a full disk under a SQLite
//! database, as a shop's small VM meets it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted when dropped.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`16m`) on a fresh directory; `None` when this process may
    /// not mount (not root).
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("insta-router-disk-")
            .tempdir()
            .ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    /// Its root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Fills it up: a file grows until the disk refuses another byte.
    ///
    /// # Panics
    ///
    /// When the file cannot be created at all.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).expect("create the filler");
        let block = vec![0_u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last partial block, byte by byte in larger steps.
        for size in [4096, 512, 1] {
            while file.write_all(&block[..size]).is_ok() {}
        }
        let _ = file.sync_all();
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
