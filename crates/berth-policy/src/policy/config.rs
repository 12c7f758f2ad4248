//! The policy file (TOML) → [`AccessPolicy`], every pattern compiled here, once.
//!
//! Values keep their spans so that every error names its line and column.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{method_bit, AccessPolicy, Rule, DEFAULT_MAX_BODY, METHODS};
use crate::body::{normalize_cap, normalize_sysctl, Namespace};
use crate::client::{ClientSelector, ClientSet};
use crate::endpoint::{split_version, Section};
use crate::error::PolicyError;
use crate::hostpath::{clean_absolute, FsPathResolver};
use crate::image;
use crate::limit::Limit;
use crate::pattern::Glob;

/// Bodies larger than this cannot be asked for.
const MAX_BODY_CEILING: i64 = 64 << 20;

type List = Option<Spanned<Vec<Spanned<String>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default: Option<Spanned<String>>,
    #[serde(default)]
    read_only: bool,
    max_body_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    rule: Vec<RuleFile>,
    #[serde(default)]
    limit: Vec<LimitFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: Spanned<String>,
    action: Spanned<String>,
    clients: List,
    except: List,
    methods: List,
    sections: List,
    paths: List,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFile {
    name: Spanned<String>,
    clients: List,
    except: List,
    privileged: Option<bool>,
    cap_add: List,
    devices: Option<bool>,
    host_network: Option<bool>,
    host_pid: Option<bool>,
    host_ipc: Option<bool>,
    host_uts: Option<bool>,
    host_userns: Option<bool>,
    host_cgroupns: Option<bool>,
    bind_roots: List,
    unconfined: Option<bool>,
    sysctls: List,
    images: List,
    users: List,
}

struct Ctx<'t> {
    text: &'t str,
    names: Vec<String>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: String) -> PolicyError {
        PolicyError::at(self.text, Some(span), message)
    }

    fn name(&mut self, name: &Spanned<String>, table: &str) -> Result<String, PolicyError> {
        let n = name.get_ref();
        if n.trim().is_empty() {
            return Err(self.err(name.span(), format!("[[{table}]] name must not be empty")));
        }
        if n == "default" || n == "read_only" {
            return Err(self.err(
                name.span(),
                format!("[[{table}]] name {n:?} is reserved for the top-level key"),
            ));
        }
        if self.names.contains(n) {
            return Err(self.err(name.span(), format!("duplicate name {n:?}")));
        }
        self.names.push(n.clone());
        Ok(n.clone())
    }

    /// A list where `[]` can only be a mistake (it would match nothing).
    fn nonempty<'l>(
        &self,
        list: &'l List,
        key: &str,
    ) -> Result<Option<&'l [Spanned<String>]>, PolicyError> {
        match list {
            Some(l) if l.get_ref().is_empty() => Err(self.err(
                l.span(),
                format!("`{key} = []` matches nothing; leave `{key}` out to match all"),
            )),
            Some(l) => Ok(Some(l.get_ref())),
            None => Ok(None),
        }
    }

    fn clients(&self, clients: &List, except: &List) -> Result<ClientSet, PolicyError> {
        let parse = |items: &[Spanned<String>]| {
            items
                .iter()
                .map(|s| ClientSelector::parse(s.get_ref()).map_err(|e| self.err(s.span(), e)))
                .collect::<Result<Vec<_>, _>>()
        };
        let only = self.nonempty(clients, "clients")?.map(parse).transpose()?;
        let except = match except {
            Some(l) => parse(l.get_ref())?,
            None => Vec::new(),
        };
        Ok(ClientSet { only, except })
    }

    fn each<T>(
        &self,
        list: &List,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, PolicyError> {
        list.as_ref()
            .map(|l| {
                l.get_ref()
                    .iter()
                    .map(|s| f(s.get_ref()).map_err(|e| self.err(s.span(), e)))
                    .collect()
            })
            .transpose()
    }
}

pub(super) fn parse(text: &str) -> Result<AccessPolicy, PolicyError> {
    let file: PolicyFile =
        toml::from_str(text).map_err(|e| PolicyError::at(text, e.span(), toml_message(&e)))?;
    let mut cx = Ctx {
        text,
        names: Vec::new(),
    };
    let default_allow = match &file.default {
        None => false,
        Some(d) => match d.get_ref().as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                return Err(cx.err(
                    d.span(),
                    format!("default = {other:?}: expected \"allow\" or \"deny\""),
                ))
            }
        },
    };
    let max_body = match &file.max_body_bytes {
        None => DEFAULT_MAX_BODY,
        Some(n) if (1..=MAX_BODY_CEILING).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            return Err(cx.err(
                n.span(),
                format!("max_body_bytes must be between 1 and {MAX_BODY_CEILING}"),
            ))
        }
    };
    let rules = file
        .rule
        .iter()
        .map(|r| rule(&mut cx, r))
        .collect::<Result<_, _>>()?;
    let limits = file
        .limit
        .iter()
        .map(|l| limit(&mut cx, l))
        .collect::<Result<_, _>>()?;
    Ok(AccessPolicy {
        rules,
        limits,
        default_allow,
        read_only: file.read_only,
        max_body,
        resolver: Arc::new(FsPathResolver),
    })
}

/// The parser's message on one line, without the source snippet (quoted separately).
fn toml_message(e: &toml::de::Error) -> String {
    let own = e.message().trim();
    let text = if own.is_empty() {
        e.to_string()
    } else {
        own.to_owned()
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|') && !l.starts_with("TOML parse error"))
        .collect();
    if lines.is_empty() {
        "invalid TOML (a value is missing or malformed)".to_owned()
    } else {
        lines.join("; ")
    }
}

fn rule(cx: &mut Ctx<'_>, r: &RuleFile) -> Result<Rule, PolicyError> {
    let name = cx.name(&r.name, "rule")?;
    let allow = match r.action.get_ref().as_str() {
        "allow" => true,
        "deny" => false,
        other => {
            return Err(cx.err(
                r.action.span(),
                format!("action = {other:?}: expected \"allow\" or \"deny\""),
            ))
        }
    };
    let clients = cx.clients(&r.clients, &r.except)?;
    let methods = cx
        .nonempty(&r.methods, "methods")?
        .map(|items| {
            items.iter().try_fold(0u16, |bits, m| {
                let upper = m.get_ref().to_ascii_uppercase();
                match method_bit(&upper) {
                    0 => Err(cx.err(
                        m.span(),
                        format!(
                            "unknown method {:?}; expected one of {}",
                            m.get_ref(),
                            METHODS.join(", ")
                        ),
                    )),
                    bit => Ok(bits | bit),
                }
            })
        })
        .transpose()?;
    let sections = cx
        .nonempty(&r.sections, "sections")?
        .map(|items| {
            items
                .iter()
                .try_fold(0u32, |bits, s| match Section::from_name(s.get_ref()) {
                    Some(section) => Ok(bits | section.bit()),
                    None => Err(cx.err(
                        s.span(),
                        format!(
                            "unknown section {:?}; expected one of {}",
                            s.get_ref(),
                            Section::ALL.map(Section::name).join(", ")
                        ),
                    )),
                })
        })
        .transpose()?;
    let paths = match cx.nonempty(&r.paths, "paths")? {
        None => None,
        Some(items) => Some(
            items
                .iter()
                .map(|p| path_pattern(p.get_ref()).map_err(|e| cx.err(p.span(), e)))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Rule {
        name,
        allow,
        clients,
        methods,
        sections,
        paths,
    })
}

fn path_pattern(p: &str) -> Result<Glob, String> {
    if !p.starts_with('/') {
        return Err(format!("path pattern {p:?} must start with `/`"));
    }
    if split_version(p).0.is_some() {
        return Err(format!(
            "path pattern {p:?}: patterns match the path without its /vX.Y prefix"
        ));
    }
    Glob::new(p, Some('/'))
}

fn limit(cx: &mut Ctx<'_>, l: &LimitFile) -> Result<Limit, PolicyError> {
    let name = cx.name(&l.name, "limit")?;
    let clients = cx.clients(&l.clients, &l.except)?;
    let hosts = [
        (Namespace::Network, l.host_network),
        (Namespace::Pid, l.host_pid),
        (Namespace::Ipc, l.host_ipc),
        (Namespace::Uts, l.host_uts),
        (Namespace::Userns, l.host_userns),
        (Namespace::Cgroupns, l.host_cgroupns),
    ];
    let limit = Limit {
        name,
        clients,
        deny_privileged: l.privileged == Some(false),
        cap_add: cx.each(&l.cap_add, |c| {
            if c.trim().is_empty() {
                Err("cap_add: empty capability name".to_owned())
            } else {
                Ok(normalize_cap(c))
            }
        })?,
        deny_devices: l.devices == Some(false),
        deny_host: hosts
            .iter()
            .filter(|(_, v)| *v == Some(false))
            .fold(0, |bits, (ns, _)| bits | ns.bit()),
        bind_roots: cx.each(&l.bind_roots, |r| {
            clean_absolute(r).ok_or_else(|| format!("bind_roots: {r:?} is not an absolute path"))
        })?,
        deny_unconfined: l.unconfined == Some(false),
        sysctls: cx.each(&l.sysctls, |s| {
            Glob::new(&normalize_sysctl(s), None).map_err(|e| format!("sysctls: {e}"))
        })?,
        images: cx.each(&l.images, image::compile_pattern)?,
        users: cx.each(&l.users, |u| Ok(u.to_owned()))?,
    };
    if limit.is_empty() {
        return Err(cx.err(
            l.name.span(),
            format!(
                "limit {:?} constrains nothing; set one of privileged, cap_add, devices, \
                 host_*, bind_roots, unconfined, sysctls, images, users",
                limit.name
            ),
        ));
    }
    Ok(limit)
}
