//! Cheap invariants of the source tree, checked by `cargo test` (rust-analyzer's tidy).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn sources() -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in ["crates", "migration", "tests", "xtask"] {
            rust_files(&root().join(dir), &mut files);
        }
        files
    }

    #[test]
    fn every_source_file_says_what_it_is_for() {
        for file in sources() {
            let text = std::fs::read_to_string(&file).expect("read");
            if file.ends_with("main.rs") && text.trim_start().starts_with("fn main") {
                continue;
            }
            assert!(
                text.starts_with("//!"),
                "{} does not start with a //! comment",
                file.display()
            );
        }
    }

    #[test]
    fn no_debugging_leftovers() {
        for file in sources() {
            let text = std::fs::read_to_string(&file).expect("read");
            // Spelled in pieces so that this file does not match itself.
            for banned in [
                concat!("dbg", "!("),
                concat!("todo", "!("),
                concat!("unimplemented", "!("),
            ] {
                assert!(
                    !text.contains(banned),
                    "{} contains {banned}",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn architecture_names_every_crate() {
        let architecture = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
        for entry in std::fs::read_dir(root().join("crates"))
            .expect("crates")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                architecture.contains(&format!("crates/{name}")),
                "ARCHITECTURE.md does not mention crates/{name}"
            );
        }
    }

    #[test]
    fn only_the_server_reads_the_environment() {
        for file in sources() {
            let path = file.to_string_lossy();
            let allowed = path.contains("crates/server/")
                || path.contains("/tests/")
                || path.contains("xtask/")
                || path.ends_with("crates/storage/src/testing.rs");
            if allowed {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read");
            assert!(
                !text.contains("std::env::var") && !text.contains("env::vars"),
                "{path} reads the environment"
            );
        }
    }
}
