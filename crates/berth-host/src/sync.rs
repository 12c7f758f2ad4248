//! [`PortSync`]: keeps a [`PortForwarder`] in step with its engine from the engine's
//! event stream, so restarts by a restart policy, exits, kills and removals that never
//! pass through berth still open and free host ports (gateway notes 13).
//!
//! One session: subscribe to `GET /events` **first** (with `since` a little in the
//! past: dockerd flushes the response head before it subscribes, and replays from its
//! buffer what falls in between), then list running containers and refresh each, drop
//! forwards of containers that are gone, then refresh per event, in order. A refresh
//! re-reads the container: running → `apply` its current ports (new random ports after
//! an automatic restart), otherwise → `remove`. Because a refresh looks at the present
//! state, not at the event, a late or replayed event never closes the port of a
//! container that runs again. When the stream ends or fails (the engine restarted)
//! the session starts over, with backoff while the engine cannot be reached.

mod engine;

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_guest::GuestConnector;

use crate::{PortError, PortForwarder};
use engine::EngineClient;

/// First pause before a new session after a failure; doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How far back a subscription asks the engine to replay (`since`); replayed events
/// only cause refreshes, so a generous margin is harmless.
const REPLAY: Duration = Duration::from_secs(2);

/// Follows one engine's container lifecycle and drives its [`PortForwarder`].
#[derive(Debug)]
pub struct PortSync {
    _private: (),
}

impl PortSync {
    /// Runs until `shutdown` resolves: subscribe, list and refresh, follow events;
    /// again after the stream ends, with backoff while the engine is unreachable.
    pub async fn run(
        forwarder: PortForwarder,
        engine: GuestConnector,
        shutdown: impl Future<Output = ()>,
    ) {
        let client = EngineClient::new(engine);
        let follow = async {
            let mut backoff = BACKOFF_MIN;
            // Until a stream has been established, an absent engine is the normal state
            // of a machine that starts lazily: not worth a warning.
            let mut failing = true;
            loop {
                let mut established = false;
                let outcome = session(&forwarder, &client, &mut established).await;
                if established {
                    backoff = BACKOFF_MIN;
                    failing = false;
                }
                match outcome {
                    Ok(()) => tracing::info!(
                        engine = %client.endpoint(),
                        "engine event stream ended; subscribing again"
                    ),
                    // The stream of an engine that was up was cut: dockerd stopped
                    // (`machine stop`, idle stop, berth's own restart of a crashed one,
                    // all logged where they happen) or went away. Said once; an engine
                    // that stays away (stopped machine, lazy start) is not news.
                    Err(e) if !failing => {
                        tracing::info!(engine = %client.endpoint(), error = %e, "engine event stream cut; following again once the engine is back");
                        failing = true;
                    }
                    Err(e) => {
                        tracing::debug!(engine = %client.endpoint(), error = %e, "following engine events failed; retrying");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        };
        tokio::select! {
            () = shutdown => {}
            () = follow => {}
        }
    }
}

/// One subscription. `established` is set once events are followed.
async fn session(
    forwarder: &PortForwarder,
    client: &EngineClient,
    established: &mut bool,
) -> Result<(), PortError> {
    let since = SystemTime::now()
        .checked_sub(REPLAY)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut events = client.events(since).await?;
    // Forwards made before the list was asked for and missing from it belong to
    // containers that stopped (perhaps while the engine was away). Forwards made after
    // (a start hook) are for containers this session will see start.
    let before: HashSet<String> = forwarder.containers().into_iter().collect();
    let running = client.running().await?;
    for id in &running {
        refresh(forwarder, client, id).await?;
    }
    let running: HashSet<String> = running.into_iter().collect();
    for gone in before.difference(&running) {
        forwarder.remove(gone).await;
    }
    *established = true;
    tracing::info!(
        engine = %client.endpoint(),
        running = running.len(),
        forwards = forwarder.list().len(),
        "following engine events"
    );
    while let Some(event) = events.next().await? {
        // Legacy fields (`status`, `id`) are present below API 1.52; prefer the new ones.
        let action = event["Action"].as_str().or(event["status"].as_str());
        let Some(id) = event["Actor"]["ID"].as_str().or(event["id"].as_str()) else {
            continue;
        };
        tracing::debug!(container = id, action, "container event");
        match action {
            Some("destroy") => forwarder.remove(id).await,
            _ => refresh(forwarder, client, id).await?,
        }
    }
    Ok(())
}

/// Makes the forwards of `id` match what the engine says now.
async fn refresh(
    forwarder: &PortForwarder,
    client: &EngineClient,
    id: &str,
) -> Result<(), PortError> {
    let Some(inspect) = client.inspect(id).await? else {
        forwarder.remove(id).await;
        return Ok(());
    };
    let state = &inspect["State"];
    // A container waiting for its restart policy's next try reports Running and
    // Restarting, with no ports: nothing listens in the guest, so nothing on the host.
    let running =
        state["Running"].as_bool() == Some(true) && state["Restarting"].as_bool() != Some(true);
    if !running {
        forwarder.remove(id).await;
        return Ok(());
    }
    if let Err(e) = forwarder.apply_inspect(&inspect).await {
        // The engine runs it, but the host cannot give it its ports (another program
        // holds one). The start hook reports this to a client of berth; a container
        // started another way just stays unreachable from the host.
        tracing::warn!(container = id, error = %e, "cannot forward published ports");
    }
    Ok(())
}
