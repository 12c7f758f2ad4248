//! Test support for berth: real parts, started by the tests themselves.
//!
//! ```text
//! test ──► DockerCli ──► BerthProcess (berth serve) ──► TestEngine (dockerd in its own netns)
//!     └──────────────────────────────────────────────────┘ (direct, for comparison)
//! ```
//!
//! Engines and berth processes are started through a small shell *watchdog* that
//! kills them and removes their network namespace and files when the test process
//! goes away, however it goes (Rust never drops statics, and a SIGKILLed test runs no
//! destructor). Tests share one engine per test binary and isolate themselves by names.

mod berth;
mod docker_cli;
mod engine;
mod images;
mod watchdog;

pub use berth::BerthProcess;
pub use docker_cli::{DockerCli, Outcome};
pub use engine::TestEngine;
pub use images::busybox_rootfs_tar;

/// Retries `$cond` until it holds or `$secs` (default 10) seconds pass, then panics with
/// the message (linkerd's `assert_eventually!`).
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::assert_eventually!(@secs 10, $cond, $($msg)+)
    };
    (@secs $secs:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!($($msg)+);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }};
}
