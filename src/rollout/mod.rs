//! Rollout: the rules that decide who gets an update (`policy`, pure) and the transactions that
//! apply them to the store (`check` for update checks, `events` for reported progress).

pub mod check;
pub mod events;
pub mod floors;
pub mod policy;

pub use check::{CheckOutcome, CheckPath, CheckRequest};
pub use policy::{decide, Counters, Decision, Denial, InstanceState, NoUpdateEffect, Target};
