//! A memcached node over the pure model. A restart begins empty: the model lives as long as the
//! node's task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use madsim::net::Endpoint;
use madsim::time::Instant;

use crate::models::memcached::{self as mc, MemcachedModel};
use crate::net::{now_ms, serve, TAG_MEMCACHED};

pub async fn memcached_node(addr: SocketAddr, start: Instant) {
    let model = Arc::new(Mutex::new(MemcachedModel::default()));
    let ep = Endpoint::bind(addr).await.expect("bind memcached");
    serve(ep, TAG_MEMCACHED, move |c: mc::Cmd| {
        let m = model.clone();
        async move { m.lock().unwrap().exec(now_ms(start), c) }
    })
    .await;
}
