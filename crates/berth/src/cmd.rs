//! One module per subcommand.

mod client;
pub(crate) mod docker;
pub(crate) mod format;
pub(crate) mod install;
pub(crate) mod machine;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod tenant;

/// A mistake in how berth was invoked or configured (exit code 64).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
