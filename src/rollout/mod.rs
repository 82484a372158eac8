//! Rollout: the rules that decide who gets an update (`policy`, pure) and the transactions that
//! apply them to the store (`check` for update checks, `events` for reported progress,
//! `sweep` for rollouts whose last instances went silent).

pub mod check;
pub mod events;
pub mod floors;
pub mod policy;
pub mod sweep;

pub use check::{CheckOutcome, CheckPath, CheckRequest};
pub use policy::{decide, Counters, Decision, Denial, InstanceState, NoUpdateEffect, Target};
