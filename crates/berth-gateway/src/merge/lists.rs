//! List endpoints: `GET /containers/json`, `/images/json`, `/volumes`, `/networks`.

use serde_json::{Map, Value};

use super::query::{go_atoi, query_value};
use super::{array_items, concat_field, sort_created_desc};

/// `GET /containers/json`: every engine's list, answered to the client's full query,
/// merged newest first and cut to `limit`.
///
/// dockerd sorts by creation time in nanoseconds (`daemon/list.go`, `byCreatedDescending`)
/// but shows only seconds (`Created`); each engine's own order is kept, and containers
/// created in the same second on different engines come in engine order. Each engine
/// already applied `limit` (which also implies `all`), so the newest `limit` of the union
/// are among what they sent.
pub(crate) fn containers(per_engine: Vec<Value>, limit: Option<usize>) -> Value {
    let mut items: Vec<Value> = per_engine.into_iter().flat_map(array_items).collect();
    sort_created_desc(&mut items);
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Value::Array(items)
}

/// The `limit` of a `GET /containers/json` query as dockerd reads it: the first `limit`
/// value, a decimal integer (`strconv.Atoi`); only a positive one limits. `None` also for
/// a value dockerd rejects, since every engine then answers the error itself.
pub(crate) fn limit_from_query(query: Option<&str>) -> Option<usize> {
    let value = query_value(query?, "limit")?;
    let limit = go_atoi(&value)?;
    usize::try_from(limit).ok().filter(|&n| n > 0)
}

/// `GET /images/json`: every engine's list, newest first (`daemon/images/images.go`
/// sorts by `Created` descending). An image present on two engines is listed twice, as
/// the two engines hold two copies.
pub(crate) fn images(per_engine: Vec<Value>) -> Value {
    let mut items: Vec<Value> = per_engine.into_iter().flat_map(array_items).collect();
    sort_created_desc(&mut items);
    Value::Array(items)
}

/// `GET /volumes`: `{"Volumes": [...], "Warnings": [...]}`, both concatenated in engine
/// order (dockerd does not sort volumes; the CLI does). `Warnings` is `null` when no
/// engine warned, as dockerd prints it.
pub(crate) fn volumes(per_engine: Vec<Value>) -> Value {
    let mut merged = Map::new();
    merged.insert(
        "Volumes".into(),
        concat_field(&per_engine, "Volumes").unwrap_or_else(|| Value::Array(Vec::new())),
    );
    merged.insert(
        "Warnings".into(),
        concat_field(&per_engine, "Warnings").unwrap_or(Value::Null),
    );
    Value::Object(merged)
}

/// `GET /networks`: every engine's list in engine order, except that the predefined
/// networks (`bridge`, `host`, `none`) come only from the `default` engine, so that
/// `docker network ls` shows one of each.
pub(crate) fn networks(per_engine: Vec<Value>, default: usize) -> Value {
    let items = per_engine
        .into_iter()
        .enumerate()
        .flat_map(|(index, answer)| {
            array_items(answer)
                .into_iter()
                .filter(move |network| index == default || !is_predefined_network(network))
        })
        .collect();
    Value::Array(items)
}

/// dockerd's predefined networks (`runconfig.IsPreDefinedNetwork`): by name, and by what
/// makes them so whatever they are called: the `host` and `null` drivers allow one
/// network each, and the default bridge carries the `default_bridge` option.
fn is_predefined_network(network: &Value) -> bool {
    let name = network.get("Name").and_then(Value::as_str);
    let driver = network.get("Driver").and_then(Value::as_str);
    let default_bridge = network
        .get("Options")
        .and_then(|options| options.get("com.docker.network.bridge.default_bridge"))
        .and_then(Value::as_str)
        == Some("true");
    matches!(name, Some("bridge" | "host" | "none" | "default"))
        || matches!(driver, Some("host" | "null"))
        || default_bridge
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A `GET /containers/json` entry as dockerd 20.10 sends it (trimmed of network detail).
    fn container(id: &str, name: &str, created: i64, state: &str) -> Value {
        json!({
            "Id": id, "Names": [format!("/{name}")], "Image": "busybox",
            "ImageID": "sha256:64ac86cd1c55d95d58e3a62c529e44cc9eaafa7565cd139c393e8c92da524bd4",
            "Command": "sleep 1000", "Created": created, "Ports": [], "Labels": {},
            "State": state, "Status": "Up Less than a second",
            "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"Networks": {}}, "Mounts": []
        })
    }

    fn ids(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item.get("Id").and_then(Value::as_str).unwrap())
            .collect()
    }

    #[test]
    fn containers_newest_first_keeping_each_engines_order_within_a_second() {
        // Engine 0 created c3, c2, c1 in the same second (its order comes from nanoseconds).
        let engine0 = json!([
            container("c3", "c3", 1795903901, "exited"),
            container("c2", "c2", 1795903901, "created"),
            container("c1", "c1", 1795903901, "running"),
        ]);
        let engine1 = json!([
            container("x", "x", 1795903950, "running"),
            container("y", "y", 1795903901, "running"),
            container("z", "z", 1795900000, "exited"),
        ]);
        let merged = containers(vec![engine0.clone(), engine1.clone()], None);
        assert_eq!(ids(&merged), ["x", "c3", "c2", "c1", "y", "z"]);
        // The entries themselves are untouched.
        assert_eq!(merged[1], engine0[0]);

        let limited = containers(vec![engine0, engine1], Some(2));
        assert_eq!(ids(&limited), ["x", "c3"]);
    }

    #[test]
    fn containers_from_no_engine_or_odd_answers_are_an_empty_list() {
        assert_eq!(containers(Vec::new(), Some(3)), json!([]));
        let odd = vec![json!({"message": "not a list"}), json!(null), json!([])];
        assert_eq!(containers(odd, None), json!([]));
    }

    #[test]
    fn limit_is_read_as_dockerd_reads_it() {
        assert_eq!(limit_from_query(None), None);
        assert_eq!(limit_from_query(Some("all=1&limit=3")), Some(3));
        assert_eq!(
            limit_from_query(Some("filters=%7B%7D&limit=2&size=1")),
            Some(2)
        );
        // The first value counts.
        assert_eq!(limit_from_query(Some("limit=5&limit=7")), Some(5));
        // Only a positive limit limits: the CLI's default is -1, and 0 means none.
        assert_eq!(limit_from_query(Some("limit=-1")), None);
        assert_eq!(limit_from_query(Some("limit=0")), None);
        // strconv.Atoi: a sign is allowed, leading zeros too; `+` in a query is a space.
        assert_eq!(limit_from_query(Some("limit=%2B5")), Some(5));
        assert_eq!(limit_from_query(Some("limit=007")), Some(7));
        assert_eq!(limit_from_query(Some("limit=+5")), None);
        // Values dockerd rejects (each engine answers the error itself).
        assert_eq!(limit_from_query(Some("limit=abc")), None);
        assert_eq!(limit_from_query(Some("limit=")), None);
        assert_eq!(limit_from_query(Some("limit")), None);
        assert_eq!(limit_from_query(Some("limit=1_0")), None);
        assert_eq!(limit_from_query(Some("limit=99999999999999999999")), None);
        assert_eq!(limit_from_query(Some("limit=%zz")), None);
        // Other keys that merely contain the word do not count.
        assert_eq!(limit_from_query(Some("xlimit=4&limits=5")), None);
        assert_eq!(limit_from_query(Some("li%6Dit=4")), Some(4));
    }

    /// A `GET /images/json` entry as dockerd 20.10 sends it.
    fn image(id: &str, tag: &str, created: i64) -> Value {
        json!({
            "Containers": -1, "Created": created, "Id": id, "Labels": null,
            "ParentId": "", "RepoDigests": null, "RepoTags": [tag],
            "SharedSize": -1, "Size": 1984178, "VirtualSize": 1984178
        })
    }

    #[test]
    fn images_newest_first_and_copies_on_two_engines_both_listed() {
        let engine0 = json!([image("sha256:b", "b:1", 300), image("sha256:a", "a:1", 100)]);
        let engine1 = json!([image("sha256:c", "c:1", 200), image("sha256:a", "a:1", 100)]);
        let merged = images(vec![engine0, engine1]);
        assert_eq!(
            ids(&merged),
            ["sha256:b", "sha256:c", "sha256:a", "sha256:a"]
        );
    }

    fn volume(name: &str) -> Value {
        json!({
            "CreatedAt": "2026-11-28T22:11:41Z", "Driver": "local", "Labels": null,
            "Mountpoint": format!("/var/lib/docker/volumes/{name}/_data"),
            "Name": name, "Options": null, "Scope": "local"
        })
    }

    #[test]
    fn volumes_concatenated_and_warnings_null_unless_an_engine_warned() {
        let engine0 = json!({"Volumes": [volume("v1"), volume("v2")], "Warnings": null});
        let engine1 = json!({"Volumes": [volume("v3")], "Warnings": null});
        let merged = volumes(vec![engine0.clone(), engine1]);
        let names: Vec<&str> = merged["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["v1", "v2", "v3"]);
        assert_eq!(merged["Warnings"], Value::Null);

        let empty = json!({"Volumes": [], "Warnings": null});
        let warned = json!({"Volumes": [], "Warnings": ["engine 1: plugin x not answering"]});
        assert_eq!(
            volumes(vec![empty.clone(), empty.clone()]),
            json!({"Volumes": [], "Warnings": null})
        );
        assert_eq!(
            volumes(vec![empty, warned]),
            json!({"Volumes": [], "Warnings": ["engine 1: plugin x not answering"]})
        );
    }

    /// The networks a fresh dockerd 20.10 lists, in its order, plus one user network.
    fn engine_networks(user: &str) -> Value {
        json!([
            {"Name": "none", "Id": format!("none-{user}"), "Scope": "local", "Driver": "null",
             "Options": {}, "Labels": {}},
            {"Name": "host", "Id": format!("host-{user}"), "Scope": "local", "Driver": "host",
             "Options": {}, "Labels": {}},
            {"Name": "bridge", "Id": format!("bridge-{user}"), "Scope": "local", "Driver": "bridge",
             "Options": {"com.docker.network.bridge.default_bridge": "true",
                         "com.docker.network.bridge.name": "docker0"}, "Labels": {}},
            {"Name": user, "Id": format!("{user}-id"), "Scope": "local", "Driver": "bridge",
             "Options": {}, "Labels": {}},
        ])
    }

    #[test]
    fn networks_predefined_only_from_the_default_engine() {
        let merged = networks(vec![engine_networks("n1"), engine_networks("n2")], 0);
        assert_eq!(
            ids(&merged),
            ["none-n1", "host-n1", "bridge-n1", "n1-id", "n2-id"]
        );
        let merged = networks(vec![engine_networks("n1"), engine_networks("n2")], 1);
        assert_eq!(
            ids(&merged),
            ["n1-id", "none-n2", "host-n2", "bridge-n2", "n2-id"]
        );
    }

    #[test]
    fn user_bridge_networks_are_not_mistaken_for_predefined_ones() {
        let user = json!({"Name": "bridge2", "Driver": "bridge", "Options": {}});
        assert!(!is_predefined_network(&user));
        let default_bridge_renamed = json!({"Name": "b0", "Driver": "bridge",
            "Options": {"com.docker.network.bridge.default_bridge": "true"}});
        assert!(is_predefined_network(&default_bridge_renamed));
        assert!(is_predefined_network(
            &json!({"Name": "x", "Driver": "null"})
        ));
    }
}
