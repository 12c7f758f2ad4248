//! Judging a body resolves its bind sources on the filesystem, which can hang (a dead
//! NFS mount): it runs off the runtime's threads, so other clients are answered
//! meanwhile, even on a one-thread runtime. No engine: every request here is answered
//! by the policy.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_gateway::{Config, EngineRouter, PolicyGate};
use berth_policy::{AccessPolicy, PathResolver};
use berth_test::gateway::{guest, send};
use berth_test::TestGateway;

/// A filesystem where every lookup takes `delay`.
#[derive(Debug)]
struct SlowResolver {
    delay: Duration,
}

impl PathResolver for SlowResolver {
    fn resolve(&self, path: &str) -> io::Result<String> {
        std::thread::sleep(self.delay);
        Ok(path.to_owned())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_bind_source_does_not_hold_other_clients() {
    let delay = Duration::from_secs(2);
    let policy = AccessPolicy::from_toml(
        "default = \"allow\"\n\n[[rule]]\nname = \"no-info\"\naction = \"deny\"\npaths = [\"/info\"]\n\n[[limit]]\nname = \"roots\"\nbind_roots = [\"/srv\"]\n",
    )
    .unwrap()
    .with_resolver(Arc::new(SlowResolver { delay }));
    let config = Config {
        policy: Some(Arc::new(PolicyGate::new(policy))),
        ..Config::default()
    };
    let nowhere = Path::new("/nonexistent/bt-body-judgement.sock");
    let gw = TestGateway::start(config, EngineRouter::new(vec![guest("a", nowhere)]));
    let socket = gw.socket().to_owned();
    let t0 = Instant::now();

    // Inside the roots lexically, so the resolver is asked (source and root: 2 × delay);
    // the policy then lets it pass to the missing engine.
    let slow = tokio::spawn({
        let socket = socket.clone();
        async move {
            let started = Instant::now();
            let body = br#"{"Image":"busybox","HostConfig":{"Binds":["/srv/data:/d"]}}"#;
            let headers = [("content-type", "application/json")];
            let answer = send(&socket, "POST", "/v1.41/containers/create", &headers, body).await;
            (answer.unwrap(), started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = send(&socket, "GET", "/v1.41/info", &[], b"").await.unwrap();
    // Counted from before the slow request: a runtime thread blocked in the judgement
    // would not even have woken this test from its sleep.
    let quick_at = t0.elapsed();
    assert_eq!(quick.status(), 403, "{quick:?}");
    assert!(
        quick_at < delay,
        "another client was answered only after {quick_at:?}, while a body was judged"
    );
    let (slow, slow_took) = slow.await.unwrap();
    assert!(
        slow_took >= delay * 2,
        "the resolver was not asked: {slow_took:?}"
    );
    assert_eq!(slow.status(), 502, "{slow:?}");
    gw.stop().await;
}
