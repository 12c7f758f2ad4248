//! The access policy of berth: whether a Docker API request may pass, decided before
//! any guest I/O, with the reason a refused client reads in its 403.
//!
//! ```text
//! gateway ─► check_request(method, path, query, client) ── Allow ─────────► forward
//!                   │                                   └─ Deny ──────────► 403
//!                   └─ NeedsBody{limit} ─► read the whole body (≤ limit, any framing)
//!                                       ─► check_body ─── Allow ──────────► forward body
//!                                                     └── Deny ──────────► 403
//! ```
//!
//! The policy is a TOML file ([`AccessPolicy::from_toml`]): ordered endpoint rules by
//! client, method, section and path; limits on what container create/update, exec create
//! and volume create bodies ask for, judged as Go's `encoding/json` reads them (gateway
//! notes 11.2); and a read-only switch. [`PolicyRecorder`] writes the smallest policy that
//! allows a recorded session.

mod body;
mod client;
pub mod endpoint;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod hostpath;
mod image;
mod limit;
mod pattern;
mod policy;
mod record;
mod request;

pub use body::{
    project_of, BodyKind, DockerBody, HostPathKind, ObjectKind, Reference, ResourceLimits, Ties,
    COMPOSE_PROJECT_LABEL,
};
pub use client::ClientIdentity;
pub use endpoint::Section;
pub use error::PolicyError;
pub use hostpath::{clean_path, is_within, FsPathResolver, PathResolver};
pub use policy::AccessPolicy;
pub use record::PolicyRecorder;
pub use request::{Decision, RequestFacts};

#[cfg(test)]
mod tests;
