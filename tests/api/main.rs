//! Black-box tests: the real `insta-router` binary, over HTTP. See `tests/lib.rs`.

mod accounts;
mod docs;
mod lifecycle;
mod system;
