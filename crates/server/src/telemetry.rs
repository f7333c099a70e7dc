//! Structured logging with tracing, and errors said once by their causes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `level` is `LOG_LEVEL` (a level name, or a full filter),
/// `json` selects JSON lines over text, `stderr` writes there instead of stdout (for commands
/// whose results go to stdout). Noisy dependencies are held at `warn`.
pub fn init(level: &str, json: bool, stderr: bool) {
    let level = level.trim().to_ascii_lowercase();
    let directives = if level.contains('=') || level.contains(',') {
        level
    } else {
        format!("{level},sqlx=warn,sea_orm=warn,sea_orm_migration=warn,actix_server=warn")
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    let terminal = if stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = if json {
        // The request's span carries its `request_id`.
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
    // A second call (tests) keeps the first subscriber.
    drop(result);
}

/// `err` and its causes joined by `: `, each said once: a cause whose text an outer one
/// already holds (drivers repeat themselves: "pool timed out ...: pool timed out ...") is
/// left out.
pub fn root_cause(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
