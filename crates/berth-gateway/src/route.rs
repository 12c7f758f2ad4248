//! Route: which guest serves a request.
//!
//! One engine today; the router is where routing by platform and by owner goes
//! (several engines behind one socket).

use std::sync::Arc;

use crate::classify::Classified;
use crate::guest::Guest;

/// Chooses the guest engine for each request.
#[derive(Debug)]
pub struct EngineRouter {
    guests: Vec<Arc<Guest>>,
}

impl EngineRouter {
    /// A router over `guests`; the first one is the default.
    ///
    /// # Panics
    /// If `guests` is empty: a gateway without an engine is a configuration error
    /// caught before this point.
    pub fn new(guests: Vec<Arc<Guest>>) -> Self {
        assert!(!guests.is_empty(), "EngineRouter needs at least one guest");
        Self { guests }
    }

    /// The engine for requests that name no owner or platform.
    pub fn default_guest(&self) -> &Arc<Guest> {
        &self.guests[0]
    }

    /// The engine that serves `classified`.
    pub fn route(&self, _classified: &Classified) -> &Arc<Guest> {
        self.default_guest()
    }

    /// All engines, default first.
    pub fn guests(&self) -> &[Arc<Guest>] {
        &self.guests
    }
}
