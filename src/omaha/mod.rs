//! The Omaha v3 update protocol as update_engine (CoreOS/Flatcar) and rollbridge's own agent
//! speak it: `protocol` parses and writes the XML, `handler` turns each `<app>` into a rollout
//! check, `status` holds the exact status strings clients and tooling depend on.

pub mod handler;
pub mod multi;
pub mod protocol;
pub mod status;

pub use handler::{handle, OmahaOptions};
