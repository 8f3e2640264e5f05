//! One module per simulated server, each a madsim node task over a pure model in
//! [`crate::models`].

pub mod memcached;
pub mod postgres;
pub mod redis;
pub mod sentinel;
