//! `--group NAME`: several hosts share the configured components through a Kafka consumer
//! group (issue 16): the coordination topic and the partition <-> component map ([`plan`]),
//! the group member ([`member`]), the run's membership ([`session`]), the producers moved
//! in and out ([`Membership`]) and what `/readyz` and `/metrics` say of it ([`GroupStatus`]).

pub mod member;
mod membership;
pub mod plan;
pub mod session;
mod status;

pub use membership::{Membership, StartFn};
pub use status::GroupStatus;
