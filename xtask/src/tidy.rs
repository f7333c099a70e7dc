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

    /// The workspace packages each package depends on (`[dependencies]`), by short name.
    fn workspace_dependencies(manifest: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(manifest).expect("read manifest");
        let mut in_dependencies = false;
        let mut found = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_dependencies = line == "[dependencies]";
                continue;
            }
            if in_dependencies && let Some(rest) = line.strip_prefix("insta-router-") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                found.push(name);
            }
        }
        found.sort();
        found
    }

    /// Where a package of the edges list lives.
    fn manifest_of(package: &str) -> PathBuf {
        match package {
            "migration" | "tests" | "bench" => root().join(package).join("Cargo.toml"),
            name => root().join("crates").join(name).join("Cargo.toml"),
        }
    }

    #[test]
    fn crate_edges_are_the_documented_ones() {
        let architecture = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
        let block = architecture
            .split("```edges\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("ARCHITECTURE.md has an ```edges block");
        let mut listed = Vec::new();
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let (package, targets) = line.split_once("->").expect("`package -> targets`");
            let package = package.trim();
            let mut documented: Vec<String> = targets
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            documented.sort();
            let actual = workspace_dependencies(&manifest_of(package));
            assert_eq!(
                actual, documented,
                "{package}'s workspace dependencies differ from ARCHITECTURE.md's edges"
            );
            listed.push(package.to_owned());
        }
        for entry in std::fs::read_dir(root().join("crates"))
            .expect("crates")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                listed.contains(&name),
                "ARCHITECTURE.md's edges omit crates/{name}"
            );
        }
    }

    #[test]
    fn every_port_has_a_mock() {
        let mut files = Vec::new();
        rust_files(&root().join("crates/ports/src"), &mut files);
        let mut traits = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.starts_with("pub trait ") {
                    traits += 1;
                    let attributes = &lines[i.saturating_sub(3)..i];
                    assert!(
                        attributes.iter().any(|a| a.contains("mockall::automock")),
                        "{}: {line} has no mockall double",
                        file.display()
                    );
                }
            }
        }
        assert!(traits >= 20, "found only {traits} port traits");
    }

    #[test]
    fn storage_exposes_no_sea_orm_type() {
        let mut files = Vec::new();
        rust_files(&root().join("crates/storage/src"), &mut files);
        for file in files {
            let path = file.to_string_lossy().into_owned();
            // Entities are private; the testing helpers are test-only.
            if path.contains("/entity/") || path.ends_with("testing.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read");
            let mut public_block = false;
            for line in text.lines() {
                let code = line.trim_start();
                let public = code.starts_with("pub ") && !code.starts_with("pub(");
                // Every variant of a public enum is public; a struct's fields only when `pub`.
                if public && code.starts_with("pub enum ") {
                    public_block = true;
                }
                if code == "}" && !line.starts_with(' ') {
                    public_block = false;
                }
                let checked = public || (public_block && !code.starts_with("//"));
                for banned in ["sea_orm", "DbErr", "DatabaseConnection", "sqlx"] {
                    assert!(
                        !(checked && code.contains(banned)),
                        "{path}: a public item names {banned}: {code}"
                    );
                }
            }
        }
    }
}
