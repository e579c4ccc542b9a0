//! Distributed mode: one master directs many workers over ZeroMQ (the master
//! binds a ROUTER on port 5557, each worker connects a DEALER).
//!
//! `protocol` defines the messages and `wire_stats` the stats reports inside
//! them; both are plain data with their own tests.

pub mod master;
pub mod plan;
#[cfg(test)]
mod proptests;
pub mod protocol;
pub mod secure;
pub mod transport;
pub mod wire_stats;
pub mod worker;
