//! Report endpoints: `GET /system/df`, `GET /info` and the prune reports.

use serde_json::{Map, Value};

use super::{concat_field, sort_created_desc, sum_field};

/// `/info` fields that count objects on an engine (capacities such as `NCPU`, `MemTotal`
/// and the daemon's own `NFd`/`NGoroutines` stay the default engine's).
const INFO_COUNTS: [&str; 5] = [
    "Containers",
    "ContainersRunning",
    "ContainersPaused",
    "ContainersStopped",
    "Images",
];

/// `GET /info`: the `default` engine's document (its ID, name, versions, warnings…)
/// with the object counts summed over all engines.
pub(crate) fn info(per_engine: Vec<Value>, default: usize) -> Value {
    let Some(base) = per_engine.get(default).or_else(|| per_engine.first()) else {
        return Value::Null;
    };
    let mut merged = base.clone();
    if let Value::Object(fields) = &mut merged {
        for key in INFO_COUNTS {
            if fields.contains_key(key) {
                if let Some(total) = sum_field(&per_engine, key) {
                    fields.insert(key.into(), total);
                }
            }
        }
    }
    merged
}

/// `GET /system/df`: sizes summed, object lists concatenated (images and containers
/// newest first, as dockerd lists them), everything else from the first engine.
///
/// Handles both shapes: API < 1.52 (`LayersSize`, `Images`, `Containers`, `Volumes`,
/// `BuildCache`, `BuilderSize`) and 1.52+ (`ImageUsage`, `ContainerUsage`, `VolumeUsage`,
/// `BuildCacheUsage`, each with counts, sizes and `Items`).
pub(crate) fn system_df(per_engine: Vec<Value>) -> Value {
    let Some(Value::Object(first)) = per_engine.first() else {
        return per_engine.into_iter().next().unwrap_or(Value::Null);
    };
    let mut merged = first.clone();
    for key in ["LayersSize", "BuilderSize"] {
        if let Some(total) = sum_field(&per_engine, key) {
            merged.insert(key.into(), total);
        }
    }
    for key in ["Images", "Containers", "Volumes", "BuildCache"] {
        if let Some(mut list) = concat_field(&per_engine, key) {
            if matches!(key, "Images" | "Containers") {
                if let Value::Array(items) = &mut list {
                    sort_created_desc(items);
                }
            }
            merged.insert(key.into(), list);
        }
    }
    for key in [
        "ImageUsage",
        "ContainerUsage",
        "VolumeUsage",
        "BuildCacheUsage",
    ] {
        let usages: Vec<Value> = per_engine
            .iter()
            .filter_map(|answer| answer.get(key))
            .filter(|usage| usage.is_object())
            .cloned()
            .collect();
        if !usages.is_empty() {
            let mut usage = sum_report(&usages);
            if matches!(key, "ImageUsage" | "ContainerUsage") {
                if let Some(Value::Array(items)) = usage.get_mut("Items") {
                    sort_created_desc(items);
                }
            }
            merged.insert(key.into(), usage);
        }
    }
    Value::Object(merged)
}

/// The prune reports (`POST /containers/prune`, `/images/prune`, `/volumes/prune`,
/// `/networks/prune`, `/build/prune`): the `…Deleted` lists concatenated in engine order
/// and `SpaceReclaimed` summed. An empty list keeps the first engine's spelling: dockerd
/// 20.10 says `null` for most and `[]` for `VolumesDeleted`, and the CLI prints nothing
/// for either.
pub(crate) fn prune(per_engine: Vec<Value>) -> Value {
    sum_report(&per_engine)
}

/// Merges objects field by field: arrays concatenated, integers summed, anything else
/// from the first engine that has the field. Fields keep first-seen order.
fn sum_report(per_engine: &[Value]) -> Value {
    let mut merged = Map::new();
    for object in per_engine.iter().filter_map(Value::as_object) {
        for (key, value) in object {
            if merged.contains_key(key) {
                continue;
            }
            let combined = match value {
                Value::Array(_) | Value::Null => concat_field(per_engine, key),
                Value::Number(_) => sum_field(per_engine, key),
                _ => None,
            };
            merged.insert(key.clone(), combined.unwrap_or_else(|| value.clone()));
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The start of a dockerd 20.10 `/info` document.
    fn info_doc(id: &str, containers: [i64; 4], images: i64) -> Value {
        json!({
            "ID": id, "Containers": containers[0], "ContainersRunning": containers[1],
            "ContainersPaused": containers[2], "ContainersStopped": containers[3],
            "Images": images, "Driver": "overlay2", "NFd": 36, "NGoroutines": 46,
            "NEventsListener": 0, "NCPU": 2, "MemTotal": 25276063744_i64,
            "ServerVersion": "20.10.24+dfsg1", "Name": id, "Warnings": null
        })
    }

    #[test]
    fn info_sums_object_counts_and_keeps_the_rest_from_the_default() {
        let engine0 = info_doc("A", [3, 1, 0, 2], 1);
        let engine1 = info_doc("B", [5, 2, 1, 2], 4);
        let merged = info(vec![engine0, engine1.clone()], 1);
        assert_eq!(merged["ID"], "B");
        assert_eq!(merged["Containers"], 8);
        assert_eq!(merged["ContainersRunning"], 3);
        assert_eq!(merged["ContainersPaused"], 1);
        assert_eq!(merged["ContainersStopped"], 4);
        assert_eq!(merged["Images"], 5);
        // Capacities and the daemon's own numbers are the default's, not sums.
        assert_eq!(merged["NCPU"], 2);
        assert_eq!(merged["MemTotal"], engine1["MemTotal"]);
        assert_eq!(merged["NFd"], 36);
        assert_eq!(info(Vec::new(), 0), Value::Null);
        // A default index out of range falls back to the first engine.
        assert_eq!(info(vec![info_doc("A", [1, 1, 0, 0], 1)], 5)["ID"], "A");
    }

    fn df_image(id: &str, created: i64) -> Value {
        json!({"Containers": 0, "Created": created, "Id": id, "Labels": null, "ParentId": "",
               "RepoDigests": null, "RepoTags": ["busybox:latest"], "SharedSize": 0,
               "Size": 1984178, "VirtualSize": 1984178})
    }

    #[test]
    fn system_df_sums_sizes_and_concatenates_objects() {
        // Shapes as dockerd 20.10 answers `GET /system/df`.
        let engine0 = json!({
            "LayersSize": 1984178, "Images": [df_image("sha256:old", 100)],
            "Containers": [{"Id": "c1", "Created": 150, "SizeRw": 3}],
            "Volumes": [], "BuildCache": null, "BuilderSize": 0
        });
        let engine1 = json!({
            "LayersSize": 1000, "Images": [df_image("sha256:new", 200)],
            "Containers": [{"Id": "c2", "Created": 250, "SizeRw": 0}],
            "Volumes": [{"Name": "v1", "UsageData": {"RefCount": 0, "Size": 0}}],
            "BuildCache": null, "BuilderSize": 0
        });
        let merged = system_df(vec![engine0, engine1]);
        assert_eq!(merged["LayersSize"], 1985178);
        assert_eq!(merged["BuilderSize"], 0);
        assert_eq!(merged["Images"][0]["Id"], "sha256:new");
        assert_eq!(merged["Images"][1]["Id"], "sha256:old");
        assert_eq!(merged["Containers"][0]["Id"], "c2");
        assert_eq!(merged["Volumes"].as_array().unwrap().len(), 1);
        assert_eq!(merged["BuildCache"], Value::Null);
    }

    #[test]
    fn system_df_of_api_1_52_sums_each_usage() {
        let usage = |count: i64, size: i64, item: &str| {
            json!({
                "ImageUsage": {"ActiveCount": count, "TotalCount": count, "Reclaimable": 0,
                               "TotalSize": size, "Items": [df_image(item, size)]},
                "BuildCacheUsage": {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0,
                                    "TotalSize": 0}
            })
        };
        let merged = system_df(vec![usage(1, 10, "a"), usage(2, 20, "b")]);
        assert_eq!(merged["ImageUsage"]["TotalCount"], 3);
        assert_eq!(merged["ImageUsage"]["TotalSize"], 30);
        // Newest first: `b` was created at 20.
        assert_eq!(merged["ImageUsage"]["Items"][0]["Id"], "b");
        assert_eq!(merged["ImageUsage"]["Items"][1]["Id"], "a");
        assert_eq!(merged["BuildCacheUsage"]["TotalSize"], 0);
        assert!(merged.get("LayersSize").is_none());
    }

    #[test]
    fn prune_reports_concatenate_and_sum() {
        // What dockerd 20.10 answered to each prune on an engine with something to prune
        // and on an empty one.
        let containers = prune(vec![
            json!({"ContainersDeleted": ["6e91e7e0", "a19d9219"], "SpaceReclaimed": 3}),
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0}),
            json!({"ContainersDeleted": ["0a24b9ad"], "SpaceReclaimed": 5}),
        ]);
        assert_eq!(
            containers,
            json!({"ContainersDeleted": ["6e91e7e0", "a19d9219", "0a24b9ad"], "SpaceReclaimed": 8})
        );
        let images = prune(vec![
            json!({"ImagesDeleted": null, "SpaceReclaimed": 0}),
            json!({"ImagesDeleted": [{"Untagged": "busybox:latest"},
                                     {"Deleted": "sha256:64ac86cd"}], "SpaceReclaimed": 1984178}),
        ]);
        assert_eq!(
            images["ImagesDeleted"][1],
            json!({"Deleted": "sha256:64ac86cd"})
        );
        assert_eq!(images["SpaceReclaimed"], 1984178);
        // Networks report no space.
        let networks = prune(vec![
            json!({"NetworksDeleted": ["n1", "n2"]}),
            json!({"NetworksDeleted": ["n3"]}),
        ]);
        assert_eq!(networks, json!({"NetworksDeleted": ["n1", "n2", "n3"]}));
        // Nothing pruned anywhere: dockerd's own spelling of "nothing".
        let nothing = json!({"ContainersDeleted": null, "SpaceReclaimed": 0});
        assert_eq!(prune(vec![nothing.clone(), nothing.clone()]), nothing);
        let no_volumes = json!({"VolumesDeleted": [], "SpaceReclaimed": 0});
        assert_eq!(
            prune(vec![no_volumes.clone(), no_volumes.clone()]),
            no_volumes
        );
        let caches = prune(vec![
            json!({"CachesDeleted": null, "SpaceReclaimed": 0}),
            json!({"CachesDeleted": ["k1"], "SpaceReclaimed": 4096}),
        ]);
        assert_eq!(
            caches,
            json!({"CachesDeleted": ["k1"], "SpaceReclaimed": 4096})
        );
    }
}
