//! Test support for berth: real parts, started by the tests themselves.
//!
//! ```text
//! test ─► DockerCli / wire ─► BerthProcess (`berth serve`) ─► TestEngine (dockerd in its own netns)
//!     └─────────────────────────────────────────────────────────┘  (direct, for comparison)
//! ```
//!
//! - [`TestEngine`]: a throwaway dockerd with its own network namespace, data-root,
//!   exec-root and socket under a fresh temp dir. Needs root.
//! - [`BerthProcess`]: the berth binary running `berth serve` on a temp socket.
//! - [`ManagedBerth`]: `berth serve` running a managed machine (dockerd) of its own.
//! - [`TestGateway`]: the gateway in the test's own tokio runtime on a temp socket
//!   ([`gateway`]: guests for it, and an async client).
//! - [`TestCerts`], [`TestSshd`]: make an engine a remote machine (mutual TLS on a
//!   namespace address, or only an sshd there), after [`TestEngine::link_to_host`].
//! - [`TestRegistry`]: a registry (Debian's docker-registry) the engine pulls from.
//! - [`DockerCli`]: the real docker CLI against one socket, with a timeout.
//! - [`wire`]: raw HTTP/1.1 over a Unix socket, for wire-level checks.
//! - [`mutate`]: the mutation loop of the stable fuzz stand-ins.
//! - [`assert_eventually!`]: for state that settles asynchronously.
//!
//! Every process is watched by a small shell *watchdog* that cleans up (kills the
//! process tree, unmounts, deletes the netns and the directory) when the test process
//! goes away, however it goes: Rust never drops statics, and a SIGKILLed test runs no
//! destructor. Tests share one engine per test binary (through a `OnceLock`) and
//! isolate themselves by container, image, volume and network names.
//!
//! The API is synchronous std so that benchmarks can use it too, except [`gateway`],
//! which runs in the test's tokio runtime.

mod berth;
mod data;
mod docker_cli;
mod engine;
pub mod gateway;
mod images;
mod managed;
pub mod mutate;
pub mod procfs;
mod registry;
mod remote;
mod watchdog;
pub mod wire;

pub use berth::{BerthProcess, Fronted};
pub use data::{normalize, pseudo_random_bytes, sha256_hex};
pub use docker_cli::{CliOutput, DockerCli};
pub use engine::{link_addresses, TestEngine};
pub use gateway::TestGateway;
pub use images::busybox_rootfs_tar;
pub use managed::ManagedBerth;
pub use registry::{TestRegistry, REGISTRY_ADDR};
pub use remote::{TestCerts, TestSshd};

/// `docker run` flags that let the host's `socat` run in a busybox container (its
/// libraries mounted read-only): an echo server with UDP and a deep accept queue,
/// which busybox's own `nc` lacks. Run it as `/bin/socat`.
pub const HOST_SOCAT_MOUNTS: [&str; 6] = [
    "-v",
    "/usr/lib:/lib:ro",
    "-v",
    "/usr/lib64:/lib64:ro",
    "-v",
    "/usr/bin/socat:/bin/socat:ro",
];

/// The fixture every test of a binary shares (an engine, a berth…): started by the
/// first test that asks for it, from `start`; when that failed, every test that asks
/// fails with the reason.
///
/// ```ignore
/// fn setup() -> &'static Setup {
///     static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
///     berth_test::shared(&SETUP, || { /* start it */ })
/// }
/// ```
pub fn shared<T>(
    cell: &'static std::sync::OnceLock<Result<T, String>>,
    start: impl FnOnce() -> Result<T, String>,
) -> &'static T {
    match cell.get_or_init(start) {
        Ok(fixture) => fixture,
        Err(e) => panic!("{e}"),
    }
}

/// Multiplier for every wait in [`assert_eventually!`], from `BERTH_TEST_PATIENCE`
/// (a positive number, default 1). Raise it on slow or loaded machines.
pub fn patience() -> f64 {
    std::env::var("BERTH_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|p| *p > 0.0)
        .unwrap_or(1.0)
}

/// `limit` scaled by [`patience`]: use it for every upper bound on how long something
/// may take, so that a slow machine can be given more time without editing tests.
pub fn patient(limit: std::time::Duration) -> std::time::Duration {
    limit.mul_f64(patience())
}

/// Retries `$cond` every 50 ms until it holds or the patience runs out (10 s by
/// default, or `within = DURATION`, both scaled by [`patience`]), then panics with the
/// message (linkerd's `assert_eventually!`).
///
/// ```no_run
/// # use berth_test::assert_eventually;
/// # let count = || 1;
/// assert_eventually!(count() == 1, "count is {}", count());
/// assert_eventually!(within = std::time::Duration::from_secs(2), count() == 1);
/// ```
#[macro_export]
macro_rules! assert_eventually {
    (within = $within:expr, $cond:expr $(,)?) => {
        $crate::assert_eventually!(within = $within, $cond, "{}", stringify!($cond))
    };
    (within = $within:expr, $cond:expr, $($msg:tt)+) => {{
        let within: ::std::time::Duration = $within;
        let within = within.mul_f64($crate::patience());
        let started = ::std::time::Instant::now();
        loop {
            if $cond {
                break;
            }
            if started.elapsed() > within {
                panic!(
                    "assert_eventually: not true after {:?}: {}",
                    within,
                    format_args!($($msg)+)
                );
            }
            ::std::thread::sleep(::std::time::Duration::from_millis(50));
        }
    }};
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!(within = ::std::time::Duration::from_secs(10), $cond)
    };
    ($cond:expr, $($msg:tt)+) => {
        $crate::assert_eventually!(within = ::std::time::Duration::from_secs(10), $cond, $($msg)+)
    };
}
