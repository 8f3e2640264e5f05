//! The heartbeat beside the invalidator's passes: a beat later than the freeze gap means the
//! process was frozen, and every tier is fenced ([`super`]: "A freeze fences every tier").

use super::*;

impl Repair {
    fn now_ms(&self) -> u64 {
        // 1 and on: 0 is "no beat yet".
        self.made_at.elapsed().as_millis() as u64 + 1
    }

    /// A heartbeat: if the last was more than `gap` ago, the process was frozen meanwhile, and
    /// every tier is fenced from now (says whether it was).
    pub(super) fn beat(&self, gap: Duration) -> bool {
        let now = self.now_ms();
        let last = self.beat_ms.swap(now, Relaxed);
        if last == 0 || now - last <= gap.as_millis() as u64 || !self.active() {
            return false;
        }
        let at = Instant::now();
        for slot in 0..self.fenced.len() {
            self.fence(slot, at);
        }
        true
    }

    /// Is the last heartbeat more than `gap` old (the process was frozen, and the heartbeat has
    /// not run since it woke)?
    pub(super) fn beat_late(&self, gap: Duration) -> bool {
        let last = self.beat_ms.load(Relaxed);
        self.active() && last != 0 && self.now_ms().saturating_sub(last) > gap.as_millis() as u64
    }
}
