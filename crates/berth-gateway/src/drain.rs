//! Drain: tracks in-flight work for a graceful shutdown (mini-redis `Shutdown`). Every
//! connection and spliced stream holds a [`DrainGuard`]; the gateway waits until none
//! is left, or the drain timeout passes.

use tokio::sync::{mpsc, watch};

use crate::heap;

/// The in-flight side of a drain: hands out guards and the stop signal.
#[derive(Debug)]
pub(crate) struct Drain {
    tx: mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
}

/// The gateway's side: says stop, then waits for the guards to go.
#[derive(Debug)]
pub(crate) struct DrainControl {
    rx: mpsc::Receiver<()>,
    stop_tx: watch::Sender<bool>,
}

/// Held while a piece of in-flight work lives; also what `heap` counts to give freed
/// memory back after bursts and when berth goes quiet.
#[derive(Debug)]
pub(crate) struct DrainGuard {
    _tx: mpsc::Sender<()>,
    _in_flight: heap::Held,
}

/// A drain and its control.
pub(crate) fn drain() -> (Drain, DrainControl) {
    let (tx, rx) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    (Drain { tx, stop }, DrainControl { rx, stop_tx })
}

impl Drain {
    pub(crate) fn guard(&self) -> DrainGuard {
        DrainGuard {
            _tx: self.tx.clone(),
            _in_flight: heap::IN_FLIGHT.hold(),
        }
    }

    pub(crate) fn signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

impl DrainControl {
    /// Tells in-flight work to stop, then waits (up to `timeout`) until every guard and
    /// the [`Drain`] itself are gone; `false` if the time ran out.
    pub(crate) async fn stop_and_wait(mut self, timeout: std::time::Duration) -> bool {
        let _ = self.stop_tx.send(true);
        tokio::time::timeout(timeout, self.rx.recv()).await.is_ok()
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
