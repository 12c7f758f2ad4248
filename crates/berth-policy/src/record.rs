//! `PolicyRecorder`: watches a session and writes the smallest policy that allows
//! exactly what it saw.
//!
//! Granularity is that of the policy language: per client, the methods used in each
//! section (sections with the same methods share a rule), and one limit per client
//! that allows exactly the body facts seen (capabilities, bind sources, images, …) and
//! refuses the rest. Everything else is refused by `default = "deny"`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::body::{self, Namespace};
use crate::client::ClientSelector;
use crate::endpoint::{self, Operation, Section};
use crate::hostpath::clean_absolute;
use crate::image;
use crate::limit::query_values;
use crate::pattern::Glob;
use crate::policy::{method_bit, DEFAULT_MAX_BODY, METHODS};
use crate::request::RequestFacts;

/// Records requests and prints the policy that allows exactly them. Shareable between
/// connections (`&self` everywhere).
#[derive(Debug, Default)]
pub struct PolicyRecorder {
    seen: Mutex<BTreeMap<String, Seen>>,
}

/// What one client did.
#[derive(Debug, Default)]
struct Seen {
    methods: BTreeMap<Section, u16>,
    privileged: bool,
    caps: BTreeSet<String>,
    devices: bool,
    host: u8,
    binds: BTreeSet<String>,
    unconfined: bool,
    sysctls: BTreeSet<String>,
    images: BTreeSet<String>,
    users: BTreeSet<String>,
}

impl PolicyRecorder {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Some(bound)` when the recorder needs this request's body to record its facts;
    /// the gateway reads it as it would for [`crate::Decision::NeedsBody`].
    pub fn wants_body(&self, req: &RequestFacts<'_>) -> Option<usize> {
        endpoint::classify(req.method, req.path)
            .operation
            .filter(|op| op.reads_body())
            .map(|_| DEFAULT_MAX_BODY)
    }

    /// Records one request, with its body when [`PolicyRecorder::wants_body`] asked for it.
    pub fn record(&self, req: &RequestFacts<'_>, body: Option<&[u8]>) {
        let bit = method_bit(req.method);
        if bit == 0 {
            return; // a method no rule can name stays refused
        }
        let c = endpoint::classify(req.method, req.path);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen
            .entry(ClientSelector::text_for(req.client))
            .or_default();
        *s.methods.entry(c.section).or_default() |= bit;
        match c.operation {
            Some(op) if op.reads_body() => {
                if let Some(facts) = body.and_then(|b| body::facts(op, b).ok()) {
                    s.add(&facts);
                }
            }
            Some(Operation::ImageCreate) => {
                let query = req.query.unwrap_or("");
                let tags: Vec<_> = query_values(query, "tag").collect();
                for from in query_values(query, "fromImage") {
                    for tag in tags
                        .iter()
                        .map(|t| t.as_ref())
                        .chain(tags.is_empty().then_some(""))
                    {
                        if let Ok(r) = image::pull_reference(&from, tag) {
                            s.images.insert(Glob::escape(&r));
                        }
                    }
                }
            }
            Some(Operation::Build) => {
                let query = req.query.unwrap_or("");
                if query_values(query, "networkmode").any(|m| m.trim().eq_ignore_ascii_case("host"))
                {
                    s.host |= Namespace::Network.bit();
                }
            }
            _ => {}
        }
    }

    /// The recorded policy as a TOML policy file.
    pub fn to_toml(&self) -> String {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from(
            "# Recorded by berth: allows exactly the requests seen, refuses everything else.\n\
             default = \"deny\"\n",
        );
        let mut n = 0;
        for (client, s) in seen.iter() {
            let mut by_methods: BTreeMap<u16, Vec<Section>> = BTreeMap::new();
            for (section, bits) in &s.methods {
                by_methods.entry(*bits).or_default().push(*section);
            }
            for (bits, sections) in &by_methods {
                n += 1;
                let methods = METHODS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, m)| *m);
                let _ = write!(
                    out,
                    "\n[[rule]]\nname = \"recorded-{n}\"\naction = \"allow\"\nclients = {}\nmethods = {}\nsections = {}\n",
                    list([client.as_str()]),
                    list(methods),
                    list(sections.iter().map(|s| s.name())),
                );
            }
            n += 1;
            let _ = write!(
                out,
                "\n[[limit]]\nname = \"recorded-{n}\"\nclients = {}\n",
                list([client.as_str()])
            );
            let mut flag = |key: &str, seen: bool| {
                if !seen {
                    let _ = writeln!(out, "{key} = false");
                }
            };
            flag("privileged", s.privileged);
            flag("devices", s.devices);
            flag("unconfined", s.unconfined);
            for ns in Namespace::ALL {
                flag(ns.key(), s.host & ns.bit() != 0);
            }
            let _ = writeln!(out, "cap_add = {}", list(&s.caps));
            let _ = writeln!(out, "bind_roots = {}", list(&s.binds));
            let _ = writeln!(out, "sysctls = {}", list(&s.sysctls));
            let _ = writeln!(out, "images = {}", list(&s.images));
            let _ = writeln!(out, "users = {}", list(&s.users));
        }
        out
    }
}

impl Seen {
    fn add(&mut self, f: &body::BodyFacts) {
        self.privileged |= f.privileged;
        self.caps.extend(f.caps.iter().cloned());
        self.devices |= !f.devices.is_empty();
        self.host |= f.host_modes.iter().fold(0, |bits, ns| bits | ns.bit());
        self.binds
            .extend(f.bind_sources.iter().filter_map(|s| clean_absolute(s)));
        self.unconfined |= !f.unconfined.is_empty();
        self.sysctls
            .extend(f.sysctls.iter().map(|s| Glob::escape(s)));
        for r in &f.images {
            if let Ok(candidates) = image::candidates(r) {
                self.images
                    .extend(candidates.iter().map(|c| Glob::escape(c)));
            }
        }
        self.users.extend(f.users.iter().cloned());
    }
}

/// A TOML array of strings.
fn list<I>(items: I) -> String
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let items: Vec<String> = items
        .into_iter()
        .map(|s| toml::Value::String(s.as_ref().to_owned()).to_string())
        .collect();
    format!("[{}]", items.join(", "))
}
