//! rollbridge: releases arrive from CI (webhooks, pollers, manual triggers), become versioned
//! Omaha packages promoted to channels, and leave as policy-controlled rollouts to
//! update_engine hosts and rollbridge's Docker agent. See ARCHITECTURE.md for the map.

pub mod agent;
pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod memory;
pub mod omaha;
pub mod rollout;
pub mod sources;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
