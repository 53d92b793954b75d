//! `--group NAME`: several hosts share the configured components through a Kafka consumer
//! group (issue 16). Work in progress: only the pure part is here so far ([`plan`]: the
//! coordination topic's name, partition <-> component, and what a rebalance starts and stops).

pub mod member;
pub mod plan;
