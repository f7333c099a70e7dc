//! The settings as people read them: the README's table and `deploy/.env.example`, both
//! written from [`super::table::TABLE`].

use super::Entry;
use super::table::TABLE;

/// Where the README's table starts and ends.
pub(crate) const README_BEGIN: &str =
    "<!-- settings: begin (written from crates/server/src/settings/table.rs) -->";
/// See [`README_BEGIN`].
pub(crate) const README_END: &str = "<!-- settings: end -->";

/// One paragraph of a description.
fn text(entry: &Entry) -> String {
    entry
        .doc
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The README's settings table, between its markers.
pub(crate) fn readme_table() -> String {
    let mut out = format!("{README_BEGIN}\n| variable | default | meaning |\n|---|---|---|\n");
    for entry in TABLE {
        let default = if entry.default.is_empty() {
            "empty".to_owned()
        } else {
            format!("`{}`", entry.default)
        };
        out.push_str(&format!(
            "| `{}` | {default} | {} |\n",
            entry.env,
            text(entry).replace('|', "\\|")
        ));
    }
    out.push_str(README_END);
    out
}

/// `deploy/.env.example`: every setting at its default, by section.
pub(crate) fn env_example() -> String {
    let mut out = String::from(
        "# insta-router configuration: every setting at its default. Copy to .env (read at\n\
         # start) or set these in the environment. Written from\n\
         # crates/server/src/settings/table.rs.\n",
    );
    let mut section = "";
    for entry in TABLE {
        if entry.section != section {
            section = entry.section;
            out.push_str(&format!("\n# --- {section}\n"));
        }
        for line in wrap(&text(entry), 90) {
            out.push_str(&format!("# {line}\n"));
        }
        let value = if entry.default.contains([' ', ',']) {
            format!("\"{}\"", entry.default)
        } else {
            entry.default.to_owned()
        };
        out.push_str(&format!("{}={value}\n", entry.env));
    }
    out
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Compares `path` with `want`; when they differ, writes `want` and returns the path, so
    /// that the next run (and the commit) has the file as the table says.
    fn refresh(path: &std::path::Path, want: &str) -> Option<String> {
        let have = std::fs::read_to_string(path).unwrap_or_default();
        (have != want).then(|| {
            std::fs::write(path, want).unwrap();
            path.display().to_string()
        })
    }

    #[test]
    fn the_readme_and_the_env_example_list_every_setting_as_the_table_says() {
        let readme_path = repo().join("README.md");
        let readme = std::fs::read_to_string(&readme_path).unwrap();
        let (Some(begin), Some(end)) = (readme.find(README_BEGIN), readme.find(README_END)) else {
            panic!("README.md lacks the settings markers {README_BEGIN} ... {README_END}");
        };
        let want = format!(
            "{}{}{}",
            &readme[..begin],
            readme_table(),
            &readme[end + README_END.len()..]
        );
        let stale: Vec<String> = [
            refresh(&readme_path, &want),
            refresh(&repo().join("deploy/.env.example"), &env_example()),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert!(
            stale.is_empty(),
            "{stale:?} were not up to date with the settings table; they are now: review and commit them"
        );
    }

    #[test]
    fn every_default_parses_and_every_variable_is_listed_once() {
        let settings = super::super::Settings::load_from(Default::default(), None);
        assert!(settings.is_ok(), "{settings:?}");
        let mut names: Vec<&str> = TABLE.iter().map(|e| e.env).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }
}
