//! `aside`: cache-aside caching over Redis (L1), Memcached (L2) and PostgreSQL.
//!
//! The library itself arrives with its own issue; the workspace starts with the history format and
//! its checkers (the `invariants` crate), which everything else in this project ends in.
