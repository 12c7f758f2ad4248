//! A tenant's namespace: its objects' names on the engine are `<tenant>.<name>`; the
//! tenant writes and reads `<name>`. What the engine answers is mapped back here
//! (lists, inspects, what a create returns).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The engine name of a tenant's object.
pub(crate) fn inward(tenant: &str, name: &str) -> String {
    format!("{tenant}.{name}")
}

/// The tenant's name of an engine name (unchanged when it is not in the namespace).
pub(crate) fn outward<'a>(tenant: &str, engine: &'a str) -> &'a str {
    engine
        .strip_prefix(tenant)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(engine)
}

/// What a JSON answer is, to map its names out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    ContainerList,
    Container,
    NetworkList,
    Network,
    VolumeList,
    Volume,
}

/// Maps every name of the tenant's namespace in `answer` back to the tenant's names.
pub(crate) fn map_out(tenant: &str, shape: Shape, answer: &mut Value) {
    match shape {
        Shape::ContainerList => {
            for c in answer.as_array_mut().into_iter().flatten() {
                if let Some(names) = c.get_mut("Names").and_then(Value::as_array_mut) {
                    for n in names {
                        map_path_name(tenant, n);
                    }
                }
                container_common(tenant, c);
            }
        }
        Shape::Container => {
            if let Some(n) = answer.get_mut("Name") {
                map_path_name(tenant, n);
            }
            container_common(tenant, answer);
            if let Some(binds) = answer
                .pointer_mut("/HostConfig/Binds")
                .and_then(Value::as_array_mut)
            {
                for b in binds {
                    map_string(b, |s| outward(tenant, s).to_owned());
                }
            }
        }
        Shape::NetworkList => {
            for n in answer.as_array_mut().into_iter().flatten() {
                network(tenant, n);
            }
        }
        Shape::Network => network(tenant, answer),
        Shape::VolumeList => {
            for v in answer
                .get_mut("Volumes")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                map_field(tenant, v, "Name");
            }
        }
        Shape::Volume => map_field(tenant, answer, "Name"),
    }
}

/// The fields of a container list entry berth reads, borrowed as the engine wrote them
/// (a field given twice makes the entry unreadable this way).
#[derive(Deserialize)]
struct ListEntry<'a> {
    #[serde(rename = "Id", borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "Names", borrow)]
    names: Option<&'a RawValue>,
    #[serde(rename = "Image", borrow)]
    image: Option<&'a RawValue>,
    #[serde(rename = "HostConfig", borrow)]
    host_config: Option<&'a RawValue>,
    #[serde(rename = "Mounts", borrow)]
    mounts: Option<&'a RawValue>,
    #[serde(rename = "NetworkSettings", borrow)]
    network_settings: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ListNetworkSettings<'a> {
    #[serde(rename = "Networks", borrow)]
    networks: Option<&'a RawValue>,
}

/// A container list (`body`, as the engine sent it) mapped out as [`map_out`] maps it,
/// without reading it whole into `Value`s: the answer is the engine's bytes with only
/// the values berth maps replaced (`Names`, `Image`, `HostConfig`, `Mounts`, the keys
/// of `NetworkSettings.Networks`), each read on its own. The entries' IDs go to `ids`.
/// `None` when the answer is not a list of objects this way (then it is mapped as a
/// `Value`).
pub(crate) fn map_container_list(
    tenant: &str,
    body: &[u8],
    ids: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let list: Vec<ListEntry<'_>> = serde_json::from_slice(body).ok()?;
    // Where a borrowed value starts in `body`.
    let at = |raw: &RawValue| (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize);
    // (start, length, replacement), in no order yet.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for entry in &list {
        if let Some(id) = entry.id {
            ids.push(serde_json::from_str(id.get()).ok()?);
        }
        let mapped = [
            ("Names", entry.names),
            ("Image", entry.image),
            ("HostConfig", entry.host_config),
            ("Mounts", entry.mounts),
        ];
        let mut read = serde_json::Map::new();
        for (key, raw) in mapped {
            if let Some(raw) = raw {
                read.insert(key.into(), serde_json::from_str(raw.get()).ok()?);
            }
        }
        let mut one = Value::Array(vec![Value::Object(read.clone())]);
        map_out(tenant, Shape::ContainerList, &mut one);
        for (key, raw) in mapped {
            let (Some(raw), Some(out)) = (raw, one[0].get(key)) else {
                continue;
            };
            if read.get(key) != Some(out) {
                edits.push((at(raw)?, raw.get().len(), serde_json::to_vec(out).ok()?));
            }
        }
        let Some(settings) = entry.network_settings else {
            continue;
        };
        let settings: ListNetworkSettings<'_> = serde_json::from_str(settings.get()).ok()?;
        let Some(raw) = settings.networks else {
            continue;
        };
        let networks: Option<BTreeMap<String, &RawValue>> = serde_json::from_str(raw.get()).ok()?;
        let Some(networks) = networks.filter(|n| n.keys().any(|k| outward(tenant, k) != k)) else {
            continue;
        };
        let renamed: BTreeMap<&str, &RawValue> = networks
            .iter()
            .map(|(k, v)| (outward(tenant, k), *v))
            .collect();
        edits.push((
            at(raw)?,
            raw.get().len(),
            serde_json::to_vec(&renamed).ok()?,
        ));
    }
    edits.sort_unstable_by_key(|e| e.0);
    let mut out = Vec::with_capacity(body.len() + 1);
    let mut from = 0;
    for (start, len, with) in edits {
        out.extend_from_slice(body.get(from..start)?);
        out.extend_from_slice(&with);
        from = start + len;
    }
    out.extend_from_slice(body.get(from..)?);
    // dockerd's encoder ends every document with a newline.
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    Some(out)
}

/// What a container list entry and an inspect share.
fn container_common(tenant: &str, c: &mut Value) {
    // The image as the tenant named it (list: `Image`; inspect: `Config.Image`).
    for key in ["/Image", "/Config/Image"] {
        if let Some(image) = c.pointer_mut(key) {
            map_string(image, |s| {
                super::images::outward(tenant, s).map_or_else(|| s.to_owned(), |o| o.into_owned())
            });
        }
    }
    if let Some(mode) = c.pointer_mut("/HostConfig/NetworkMode") {
        map_string(mode, |s| outward(tenant, s).to_owned());
    }
    if let Some(Value::Object(nets)) = c.pointer_mut("/NetworkSettings/Networks") {
        let taken = std::mem::take(nets);
        *nets = taken
            .into_iter()
            .map(|(k, v)| (outward(tenant, &k).to_owned(), v))
            .collect();
    }
    for m in c
        .get_mut("Mounts")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        map_field(tenant, m, "Name");
    }
}

fn network(tenant: &str, n: &mut Value) {
    map_field(tenant, n, "Name");
    if let Some(Value::Object(members)) = n.get_mut("Containers") {
        for (_, m) in members.iter_mut() {
            map_field(tenant, m, "Name");
        }
    }
}

fn map_field(tenant: &str, v: &mut Value, key: &str) {
    if let Some(s) = v.get_mut(key) {
        map_string(s, |s| outward(tenant, s).to_owned());
    }
}

/// `/ci.web` → `/web`; a link name `/ci.web/ci.db` → `/web/db`.
fn map_path_name(tenant: &str, v: &mut Value) {
    map_string(v, |s| {
        s.split('/')
            .map(|part| outward(tenant, part))
            .collect::<Vec<_>>()
            .join("/")
    });
}

fn map_string(v: &mut Value, f: impl FnOnce(&str) -> String) {
    if let Value::String(s) = v {
        *s = f(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_come_back_in_the_tenants_spelling() {
        let mut list = json!([{"Names": ["/ci.web", "/ci.a/ci.b"], "HostConfig": {"NetworkMode": "ci.backend"},
            "NetworkSettings": {"Networks": {"ci.backend": {}}}, "Mounts": [{"Name": "ci.data"}]}]);
        map_out("ci", Shape::ContainerList, &mut list);
        assert_eq!(
            list,
            json!([{"Names": ["/web", "/a/b"], "HostConfig": {"NetworkMode": "backend"},
                "NetworkSettings": {"Networks": {"backend": {}}}, "Mounts": [{"Name": "data"}]}])
        );
        // Mapped field by field, the rest as the engine wrote it: the same answer.
        let engine = br#"[{"Id":"a1","Names":["/ci.web"],"Image":"berth.tenant/ci/app","Command":"sh -c 'x'","Labels":{"berth.tenant":"ci","k":"v\u003c"},"HostConfig":{"NetworkMode":"ci.backend"},"NetworkSettings":{"Networks":{"ci.backend":{"IPAddress":"10.0.0.2","Aliases":null}},"Other":1},"Mounts":[{"Name":"ci.data","Type":"volume"}],"SizeRw":12345678901}]"#;
        let mut ids = Vec::new();
        let fast = map_container_list("ci", engine, &mut ids).unwrap();
        let mut slow: Value = serde_json::from_slice(engine).unwrap();
        map_out("ci", Shape::ContainerList, &mut slow);
        assert_eq!(serde_json::from_slice::<Value>(&fast).unwrap(), slow);
        assert!(String::from_utf8(fast.clone())
            .unwrap()
            .contains(r#""k":"v\u003c""#));
        assert_eq!(ids, ["a1"]);
        // Only what is mapped changes: the engine's order and spelling stay.
        let fast = String::from_utf8(fast).unwrap();
        assert!(
            fast.starts_with(r#"[{"Id":"a1","Names":["/web"],"Image":"app","Command""#),
            "{fast}"
        );
        assert!(fast.contains(
            r#""Networks":{"backend":{"IPAddress":"10.0.0.2","Aliases":null}},"Other":1}"#
        ));
        let other = map_container_list("zz", engine, &mut ids).unwrap();
        assert_eq!(other, [&engine[..], b"\n"].concat());
        assert_eq!(map_container_list("ci", b"{}", &mut ids), None);
        assert_eq!(
            map_container_list(
                "ci",
                br#"[{"Names":["/ci.a"],"Names":["/ci.b"]}]"#,
                &mut ids
            ),
            None
        );
        assert_eq!(outward("ci", "cix.web"), "cix.web");
        assert_eq!(outward("ci", "ci.web"), "web");
        let mut vols = json!({"Volumes": [{"Name": "ci.data"}], "Warnings": null});
        map_out("ci", Shape::VolumeList, &mut vols);
        assert_eq!(vols["Volumes"][0]["Name"], "data");
    }
}
