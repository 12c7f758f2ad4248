//! Readiness: Unverified → Verifying → Verified, per engine.
//!
//! The first request to an unverified engine starts one verification (a `GET /_ping`,
//! after starting the engine if berth manages it); requests arriving meanwhile wait
//! for that same verification instead of starting their own (single flight). Any
//! transport error sends the engine back to Unverified.
//!
//! The verification runs in its own task, so a client that gives up does not cancel
//! it for the others.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::Guest;
use crate::error::GatewayError;

type Outcome = Option<Result<(), GatewayError>>;

/// Where an engine stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadinessState {
    /// Nothing known; the next request verifies.
    Unverified,
    /// A verification is running.
    Verifying,
    /// The engine answered its readiness ping.
    Verified,
}

/// The readiness state machine of one engine.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The hot-path check: one atomic load per request once verified.
    verified: AtomicBool,
    /// The generation (managed engines) that was verified.
    generation: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Unverified,
    Verifying(watch::Receiver<Outcome>),
    Verified,
}

impl Readiness {
    /// The current state.
    pub fn state(&self) -> ReadinessState {
        match *self.lock() {
            State::Unverified => ReadinessState::Unverified,
            State::Verifying(_) => ReadinessState::Verifying,
            State::Verified => ReadinessState::Verified,
        }
    }

    /// Sends the engine back to Unverified (after a transport error).
    pub fn reset(&self) {
        if self.verified.swap(false, Ordering::AcqRel) {
            let mut state = self.lock();
            if matches!(*state, State::Verified) {
                *state = State::Unverified;
            }
        }
    }

    /// Forgets a verification made for another generation of a managed engine.
    pub(crate) fn forget_unless(&self, generation: u64) {
        if self.verified.load(Ordering::Acquire)
            && self.generation.load(Ordering::Acquire) != generation
        {
            self.reset();
        }
    }

    /// Returns once the engine is verified, verifying it if needed.
    pub(crate) async fn ensure(&self, guest: &Arc<Guest>) -> Result<(), GatewayError> {
        if self.verified.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut rx = {
            let mut state = self.lock();
            match &*state {
                State::Verified => return Ok(()),
                State::Verifying(rx) => rx.clone(),
                State::Unverified => {
                    let (tx, rx) = watch::channel(None);
                    *state = State::Verifying(rx.clone());
                    let guest = Arc::clone(guest);
                    tokio::spawn(async move {
                        let outcome = guest.verify().await;
                        if let (Err(_), Some(meter)) = (&outcome, guest.meter()) {
                            meter.readiness_failed();
                        }
                        guest.readiness.finish(outcome, &tx);
                    });
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| GatewayError::Internal("readiness verification vanished".into()))?;
        outcome.clone().unwrap_or(Ok(()))
    }

    fn finish(&self, outcome: Result<u64, GatewayError>, tx: &watch::Sender<Outcome>) {
        let shared = {
            let mut state = self.lock();
            match outcome {
                Ok(generation) => {
                    self.generation.store(generation, Ordering::Release);
                    self.verified.store(true, Ordering::Release);
                    *state = State::Verified;
                    Ok(())
                }
                Err(e) => {
                    *state = State::Unverified;
                    Err(e)
                }
            }
        };
        tx.send_replace(Some(shared));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
