//! Models of the servers, pure state machines: the simulator runs them inside madsim nodes, and
//! the conformance tests hold them to the real servers' answers.

pub mod glob;
pub mod memcached;
pub mod postgres;
pub mod redis;
