//! `idle_stop`: a managed engine with no running container, no open attach, exec,
//! BuildKit session or upload, and no event of its own (a container created, an image
//! pulled or removed…) for that long is stopped; the next request starts it again (lazy
//! start). Clients that only watch (`/events`, `logs -f`) do not keep it up: their
//! streams end when dockerd stops. Everything is asked of the engine or counted by long
//! exchanges only: the request path pays nothing for it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_engine::{EngineSupervisor, MachineState};
use berth_gateway::Guest;

/// How long the engine's answer to the container count may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses `90s`, `10m`, `1h`, `500ms` (one number, one unit; at least one second).
pub(crate) fn parse_idle_stop(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration("idle_stop", text)
}

/// Watches one managed machine and stops its engine once it has been idle `after`.
#[derive(Debug)]
pub(crate) struct IdleStop {
    pub(crate) machine: String,
    pub(crate) after: Duration,
    pub(crate) supervisor: Arc<EngineSupervisor>,
    pub(crate) guest: Arc<Guest>,
}

impl IdleStop {
    /// Checks every quarter of `after` (between 0.25 s and 30 s) until `stop` fires.
    pub(crate) async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let tick = (self.after / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        let mut last_busy: Option<Instant> = None;
        let mut looked: Option<SystemTime> = None;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(tick) => {}
            }
            let Some(idle_since) = self.idle_since(&mut last_busy, &mut looked).await else {
                continue;
            };
            if idle_since.elapsed() < self.after {
                continue;
            }
            // Last look just before stopping: an attach may have opened meanwhile.
            if self.guest.activity().open() > 0 {
                continue;
            }
            tracing::info!(
                machine = %self.machine,
                idle_secs = idle_since.elapsed().as_secs(),
                "stopping idle engine (the next request starts it again)"
            );
            if let Err(e) = self.supervisor.stop().await {
                tracing::warn!(machine = %self.machine, error = %e, "stopping the idle engine failed");
            }
            last_busy = None;
            looked = None;
        }
    }

    /// Since when the running engine has been idle; `None` while it is busy, not
    /// running, or does not answer. `looked`: when the engine's events were last read.
    async fn idle_since(
        &self,
        last_busy: &mut Option<Instant>,
        looked: &mut Option<SystemTime>,
    ) -> Option<Instant> {
        let status = self.supervisor.status();
        if !matches!(status.state, MachineState::Running) {
            *looked = None;
            return None;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        let activity = self.guest.activity();
        let busy = activity.open() > 0
            || self.running_containers().await? > 0
            || match *looked {
                Some(since) => self.events_between(since, wall).await? > 0,
                None => false,
            };
        *looked = Some(wall);
        if busy {
            *last_busy = Some(now);
            return None;
        }
        let started = status
            .uptime
            .and_then(|up| now.checked_sub(up))
            .unwrap_or(now);
        [Some(started), *last_busy, activity.last_ended()]
            .into_iter()
            .flatten()
            .max()
    }

    /// Running containers, from the engine (`GET /containers/json` lists only those).
    async fn running_containers(&self) -> Option<usize> {
        let list = tokio::time::timeout(ASK_TIMEOUT, self.guest.get_json("/containers/json"))
            .await
            .ok()?
            .map_err(|e| {
                tracing::debug!(machine = %self.machine, error = %e, "idle check: no container list");
            })
            .ok()?;
        Some(list.as_array().map_or(0, Vec::len))
    }

    /// How many events the engine recorded between `since` and `until` (a request with
    /// `until` in the past answers at once).
    async fn events_between(&self, since: SystemTime, until: SystemTime) -> Option<usize> {
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        let path = format!("/events?since={:.3}&until={:.3}", secs(since), secs(until));
        let (status, body) =
            tokio::time::timeout(ASK_TIMEOUT, self.guest.request(http::Method::GET, &path))
                .await
                .ok()?
                .map_err(|e| {
                    tracing::debug!(machine = %self.machine, error = %e, "idle check: no events");
                })
                .ok()?;
        if !status.is_success() {
            return None;
        }
        Some(
            body.split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_stop_durations() {
        assert_eq!(parse_idle_stop("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_idle_stop(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_idle_stop("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_idle_stop("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "m", "10 m", "-1s", "500ms", "1d", "1.5m"] {
            assert!(parse_idle_stop(bad).is_err(), "{bad:?} accepted");
        }
    }
}
