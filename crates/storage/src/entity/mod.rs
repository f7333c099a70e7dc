//! sea-orm entities, one per table. Crate-private: they never leave this crate.
// The derive macros make `pub` items inside these crate-private modules.
#![allow(unreachable_pub)]

pub(crate) mod accounts;
pub(crate) mod conversations;
pub(crate) mod messages;
