//! Models of Redis and memcached at the tier boundary: pure state machines (time comes in with
//! each command; no I/O, no runtime). [`crate::tier::mem`] runs them in process, for tests of your
//! own code and strategies; the simulator runs the same models inside its nodes; and
//! `sim/tests/conformance.rs` holds them to the real servers' answers, command sequence by command
//! sequence.

pub mod glob;
pub mod memcached;
pub mod redis;
