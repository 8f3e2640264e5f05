//! The network's copies of requests, while a `duplicate` fault is on: a share of the requests
//! every call sends arrives twice, the copy up to [`chaos::fault::duplicate::LATE_MS`] later,
//! behind messages sent since. A request says whether it is a copy. A server drops a copy of a
//! request it took already (TCP hands a segment to the server once) and a copy older than its
//! memory of requests, as TCP drops a segment outside its window; [`copies_absorbed`] counts
//! both. A copy that comes before its original runs the request, and the original is then taken
//! as a resend. Replies are not copied: a copy of a reply reaches a call that has its answer,
//! and would only be dropped there.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use madsim::net::Endpoint;

use super::{Payload, MESSAGES};

thread_local! {
    /// The share of requests a `duplicate` fault sends twice, in thousandths (0: none).
    static DUPLICATING_PER_MILLE: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
    /// Copied requests each server absorbed: dropped as a copy of a request it took already, or
    /// as too old for its memory of requests.
    static ABSORBED: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, u64>> =
        Default::default();
}

/// From now on each request a call sends arrives twice with probability `per_mille` / 1000, the
/// copy up to [`chaos::fault::duplicate::LATE_MS`] later (0: once again).
pub fn duplicate_requests(per_mille: u16) {
    DUPLICATING_PER_MILLE.with(|d| d.set(per_mille));
}

/// The share of requests a `duplicate` fault copies now, in thousandths (0: none).
pub fn duplicating_per_mille() -> u16 {
    DUPLICATING_PER_MILLE.with(|d| d.get())
}

/// Copied requests the server at `at` absorbed since [`super::served_reset`]: none ran twice.
pub fn copies_absorbed(at: SocketAddr) -> u64 {
    ABSORBED.with(|a| a.borrow().get(&at).copied().unwrap_or(0))
}

/// The server at `at` absorbed a copied request.
pub(super) fn absorbed(at: SocketAddr) {
    ABSORBED.with(|a| *a.borrow_mut().entry(at).or_default() += 1);
}

/// Sends a request (`payload(false)`) to `dst` under `tag` and, while a `duplicate` fault is on,
/// maybe its copy (`payload(true)`) later; each counted in [`MESSAGES`] when it is sent. The
/// copy's draws come from madsim's seeded RNG, and only while the fault is on, so a run without
/// it draws what it drew before. A request that could not be sent has no copy.
pub(super) async fn send_request(
    ep: &Endpoint,
    dst: SocketAddr,
    tag: u64,
    payload: impl Fn(bool) -> Payload,
) -> std::io::Result<()> {
    use madsim::rand::Rng;
    MESSAGES.fetch_add(1, Relaxed);
    ep.send_to_raw(dst, tag, payload(false)).await?;
    let per_mille = DUPLICATING_PER_MILLE.with(|d| d.get());
    if per_mille == 0 {
        return Ok(());
    }
    let mut rng = madsim::rand::thread_rng();
    if rng.gen_range(0..1000u16) < per_mille {
        let late_us = rng.gen_range(0..=chaos::fault::duplicate::LATE_MS * 1000);
        let (ep, copy) = (ep.clone(), payload(true));
        madsim::task::spawn(async move {
            madsim::time::sleep(Duration::from_micros(late_us)).await;
            MESSAGES.fetch_add(1, Relaxed);
            let _ = ep.send_to_raw(dst, tag, copy).await;
        });
    }
    Ok(())
}

/// No copying, nothing absorbed: a run starts with this.
pub(super) fn reset() {
    DUPLICATING_PER_MILLE.with(|d| d.set(0));
    ABSORBED.with(|a| a.borrow_mut().clear());
}
