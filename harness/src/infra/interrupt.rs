//! Interrupts, routed: while a run listens, the first SIGINT or SIGTERM
//! stops its load gracefully and the second skips the wait; a third (or
//! SIGHUP, SIGQUIT, or a signal while no run listens) cleans up every live
//! run of this process (`ownership`) and takes the signal's default course.

use std::sync::Once;

/// On SIGINT, SIGTERM, SIGHUP or SIGQUIT, cleans up every live run of this
/// process, then lets the signal take its default course.
pub fn clean_up_on_signals() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) {
            Ok(signals) => signals,
            Err(error) => {
                tracing::warn!(%error, "cannot watch signals; an interrupted run may leave services behind");
                return;
            }
        };
        let spawned = std::thread::Builder::new().name("ahsp-perf-signals".into()).spawn(move || {
            for signal in signals.forever() {
                if interrupt_listened(signal) {
                    continue;
                }
                super::ownership::clean_up_live_runs();
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot watch signals");
        }
    });
}

/// How many runs of this process listen for interrupts: while one does,
/// the first SIGINT or SIGTERM stops its load gracefully and the second
/// skips the wait; only a third (or SIGHUP, SIGQUIT) cleans up and exits at
/// once.
static LISTENERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The number of interrupts so far, for listeners to wait on.
static INTERRUPTS: std::sync::OnceLock<tokio::sync::watch::Sender<u32>> =
    std::sync::OnceLock::new();
/// The signal that interrupted this process, 0 while none has.
static INTERRUPTED_BY: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// How many interrupts a listening run absorbs before the default course.
const ABSORBED_INTERRUPTS: u32 = 2;

fn interrupts() -> &'static tokio::sync::watch::Sender<u32> {
    INTERRUPTS.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Whether a listening run took this signal (the signal thread then waits
/// for the next one instead of cleaning up).
fn interrupt_listened(signal: i32) -> bool {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::Ordering;
    if !(signal == SIGINT || signal == SIGTERM) || LISTENERS.load(Ordering::SeqCst) == 0 {
        return false;
    }
    let count = *interrupts().borrow();
    if count >= ABSORBED_INTERRUPTS {
        return false;
    }
    INTERRUPTED_BY.store(signal, Ordering::SeqCst);
    interrupts().send_replace(count + 1);
    if count == 0 {
        eprintln!(
            "ahsp-perf: interrupted; stopping the load and writing what was measured (again: skip the graceful stop; a third time: quit at once)"
        );
    } else {
        eprintln!("ahsp-perf: interrupted again; skipping the graceful stop");
    }
    true
}

/// A run's subscription to SIGINT and SIGTERM while it is alive.
#[derive(Debug)]
pub struct InterruptListener {
    receiver: tokio::sync::watch::Receiver<u32>,
}

impl InterruptListener {
    /// Subscribes; the signal handler is armed if it was not.
    pub fn new() -> InterruptListener {
        clean_up_on_signals();
        LISTENERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InterruptListener {
            receiver: interrupts().subscribe(),
        }
    }

    /// Interrupts so far (0, 1 = stop gracefully, 2 = stop now).
    pub fn count(&self) -> u32 {
        *self.receiver.borrow()
    }

    /// Waits until the count of interrupts changes; returns the new count.
    pub async fn changed(&mut self) -> u32 {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.receiver.borrow_and_update()
    }
}

impl Default for InterruptListener {
    fn default() -> Self {
        InterruptListener::new()
    }
}

impl Drop for InterruptListener {
    fn drop(&mut self) {
        LISTENERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The signal (SIGINT 2, SIGTERM 15) that interrupted a listening run of
/// this process, if one did: binaries exit with 128 + it.
pub fn interrupted_by() -> Option<i32> {
    match INTERRUPTED_BY.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}
