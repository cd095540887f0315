//! Stopping a run from outside (an interrupt): gracefully, so no iteration
//! starts and those in flight may finish within the graceful stop, or now,
//! so those in flight are cut and count as interrupted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Shared between whoever stops a run and its workers.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicU8>);

const RUNNING: u8 = 0;
const GRACEFULLY: u8 = 1;
const NOW: u8 = 2;

impl StopSignal {
    pub fn stop_gracefully(&self) {
        // `fetch_max`: a later graceful request never undoes a "now".
        self.0.fetch_max(GRACEFULLY, Ordering::Relaxed);
    }

    pub fn stop_now(&self) {
        self.0.fetch_max(NOW, Ordering::Relaxed);
    }

    /// Whether a stop of either kind was asked for. Relaxed is enough: it is
    /// polled by loops that also wake on timers, and publishes nothing else.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed) != RUNNING
    }

    /// Whether the graceful stop is to be skipped.
    pub fn now(&self) -> bool {
        self.0.load(Ordering::Relaxed) == NOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_outranks_gracefully_whatever_the_order() {
        let signal = StopSignal::default();
        assert!(!signal.requested());
        signal.stop_gracefully();
        assert!(signal.requested() && !signal.now());
        signal.stop_now();
        signal.stop_gracefully();
        assert!(signal.requested() && signal.now());
    }
}
