//! A tenant's namespace: its objects' names on the engine are `<tenant>.<name>`; the
//! tenant writes and reads `<name>`. What the engine answers is mapped back here
//! (lists, inspects, what a create returns).

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

/// What a container list entry and an inspect share.
fn container_common(tenant: &str, c: &mut Value) {
    // The image as the tenant named it (list: `Image`; inspect: `Config.Image`).
    for key in ["/Image", "/Config/Image"] {
        if let Some(image) = c.pointer_mut(key) {
            map_string(image, |s| {
                super::images::outward(tenant, s).unwrap_or(s).to_owned()
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
        assert_eq!(outward("ci", "cix.web"), "cix.web");
        assert_eq!(outward("ci", "ci.web"), "web");
        let mut vols = json!({"Volumes": [{"Name": "ci.data"}], "Warnings": null});
        map_out("ci", Shape::VolumeList, &mut vols);
        assert_eq!(vols["Volumes"][0]["Name"], "data");
    }
}
