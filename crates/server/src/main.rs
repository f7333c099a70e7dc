//! The `insta-router` command.

fn main() -> std::process::ExitCode {
    insta_router::cli::run()
}
