//! Rewriting `POST /containers/create` bodies: bind-mount sources translated from host
//! paths to the engine's paths (`HostConfig.Binds`, `HostConfig.Mounts[]` of type
//! `bind`).
//!
//! The body is edited as an untyped JSON value, so fields berth does not know (newer
//! API versions) survive. dockerd matches keys case-insensitively and merges
//! duplicates (gateway notes 11.2), so every key that matches case-insensitively is
//! rewritten, whichever of them the engine ends up using.

use serde_json::Value;

use super::paths::PathTranslator;

/// Why a create body cannot be forwarded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CreateRewriteError {
    /// Not a JSON object.
    Invalid(String),
    /// A host path that no mapping covers.
    Unmapped(String),
}

/// Translates every bind source in `body` with `paths`.
pub(crate) fn translate_binds(
    body: &mut Value,
    paths: &PathTranslator,
) -> Result<(), CreateRewriteError> {
    let Some(root) = body.as_object_mut() else {
        return Err(CreateRewriteError::Invalid(
            "the body is not a JSON object".into(),
        ));
    };
    for (_, host_config) in keys_mut(root, "HostConfig") {
        let Some(host_config) = host_config.as_object_mut() else {
            continue;
        };
        for (_, binds) in keys_mut(host_config, "Binds") {
            for bind in binds.as_array_mut().into_iter().flatten() {
                if let Some(spec) = bind.as_str() {
                    if let Some(rewritten) = translate_bind(spec, paths)? {
                        *bind = Value::String(rewritten);
                    }
                }
            }
        }
        for (_, mounts) in keys_mut(host_config, "Mounts") {
            for mount in mounts.as_array_mut().into_iter().flatten() {
                let Some(mount) = mount.as_object_mut() else {
                    continue;
                };
                let is_bind = keys_mut(mount, "Type")
                    .into_iter()
                    .any(|(_, t)| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bind")));
                if !is_bind {
                    continue;
                }
                for (_, source) in keys_mut(mount, "Source") {
                    if let Some(src) = source.as_str() {
                        let guest = paths
                            .to_guest(src)
                            .ok_or_else(|| CreateRewriteError::Unmapped(src.to_owned()))?;
                        *source = Value::String(guest);
                    }
                }
            }
        }
    }
    Ok(())
}

/// `src:dst[:opts]`: `src` is a host path iff it is absolute; otherwise it is a volume
/// name and stays as it is (dockerd `ParseMountRaw`).
fn translate_bind(
    spec: &str,
    paths: &PathTranslator,
) -> Result<Option<String>, CreateRewriteError> {
    let (src, rest) = spec.split_once(':').unwrap_or((spec, ""));
    if !src.starts_with('/') {
        return Ok(None);
    }
    let guest = paths
        .to_guest(src)
        .ok_or_else(|| CreateRewriteError::Unmapped(src.to_owned()))?;
    Ok(Some(if rest.is_empty() {
        guest
    } else {
        format!("{guest}:{rest}")
    }))
}

/// Every entry of `map` whose key equals `key` ignoring ASCII case.
fn keys_mut<'a>(
    map: &'a mut serde_json::Map<String, Value>,
    key: &str,
) -> Vec<(&'a String, &'a mut Value)> {
    map.iter_mut()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths() -> PathTranslator {
        PathTranslator::new([("/home".into(), "/mnt/home".into())])
    }

    #[test]
    fn binds_and_bind_mounts_are_translated_in_every_case_variant() {
        let mut body = json!({
            "Image": "busybox",
            "HostConfig": {
                "Binds": ["/home/a:/a:ro", "vol:/v", "/home/b:/b"],
                "Mounts": [
                    {"Type": "bind", "Source": "/home/c", "Target": "/c"},
                    {"Type": "volume", "Source": "data", "Target": "/d"}
                ],
                "FutureField": {"kept": true}
            },
            "hostconfig": {"binds": ["/home/z:/z"]}
        });
        translate_binds(&mut body, &paths()).unwrap();
        assert_eq!(
            body["HostConfig"]["Binds"],
            json!(["/mnt/home/a:/a:ro", "vol:/v", "/mnt/home/b:/b"])
        );
        assert_eq!(body["HostConfig"]["Mounts"][0]["Source"], "/mnt/home/c");
        assert_eq!(body["HostConfig"]["Mounts"][1]["Source"], "data");
        assert_eq!(body["HostConfig"]["FutureField"], json!({"kept": true}));
        assert_eq!(body["hostconfig"]["binds"], json!(["/mnt/home/z:/z"]));
    }

    #[test]
    fn unmapped_host_paths_are_refused() {
        let mut body = json!({"HostConfig": {"Binds": ["/etc:/host-etc"]}});
        assert_eq!(
            translate_binds(&mut body, &paths()),
            Err(CreateRewriteError::Unmapped("/etc".into()))
        );
        let mut body =
            json!({"HostConfig": {"Mounts": [{"type": "BIND", "source": "/home/../etc"}]}});
        assert!(translate_binds(&mut body, &paths()).is_err());
        assert!(translate_binds(&mut json!([1]), &paths()).is_err());
    }
}
