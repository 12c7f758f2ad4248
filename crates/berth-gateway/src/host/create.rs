//! Rewriting `POST /containers/create` and `POST /volumes/create` bodies for an engine
//! with path mappings: every host path the engine would mount (`Binds` sources,
//! `Mounts[]` of type bind, local volumes that bind a `device`, in a mount or a volume
//! create's `DriverOpts`) translated from the host's view to the engine's, on the one
//! body model ([`berth_policy::DockerBody`]), so every spelling dockerd reads is
//! translated and the body forwarded is the model encoded again.

use berth_policy::{DockerBody, HostPathKind};

use crate::paths::PathTranslator;

/// Translates every host path in `body` with `paths`; the error is a host path that no
/// mapping covers, and where it sits.
pub(crate) fn translate_host_paths(
    body: &mut DockerBody<'_>,
    paths: &PathTranslator,
) -> Result<(), (HostPathKind, String)> {
    body.rewrite_host_paths(|at, host| match paths.to_guest(host) {
        Some(guest) => Ok(Some(guest)),
        None => Err((at, host.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use berth_policy::BodyKind;

    use super::*;

    fn paths() -> PathTranslator {
        PathTranslator::new([("/home".into(), "/mnt/home".into())])
    }

    fn translate_as(kind: BodyKind, body: &str) -> Result<String, (HostPathKind, String)> {
        let mut model = DockerBody::parse(kind, body.as_bytes()).unwrap();
        translate_host_paths(&mut model, &paths())?;
        Ok(String::from_utf8(model.encode()).unwrap())
    }

    fn translate(body: &str) -> Result<String, (HostPathKind, String)> {
        translate_as(BodyKind::ContainerCreate, body)
    }

    #[test]
    fn binds_and_bind_mounts_are_translated_in_every_spelling() {
        let out = translate(
            r#"{"Image":"busybox","HostConfig":{"Binds":["/home/a:/a:ro","vol:/v"],"Mounts":[{"Type":"bind","Source":"/home/c","Target":"/c"},{"Type":"volume","Source":"data","Target":"/d"}],"FutureField":{"kept":true}},"hostconfig":{"binds":["/home/z:/z"]}}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"Image":"busybox","HostConfig":{"Binds":["/mnt/home/z:/z"],"Mounts":[{"Type":"bind","Source":"/mnt/home/c","Target":"/c"},{"Type":"volume","Source":"data","Target":"/d"}],"FutureField":{"kept":true}}}"#
        );
        // The deprecated top-level fields, read when HostConfig is absent; a folded key.
        assert_eq!(
            translate(r#"{"Binds":["/home/t:/t"],"Ho\u017ftConfig":null}"#).unwrap(),
            r#"{"Binds":["/mnt/home/t:/t"]}"#
        );
    }

    #[test]
    fn unmapped_host_paths_are_refused() {
        for body in [
            r#"{"HostConfig":{"Binds":["/etc:/host-etc"]}}"#,
            r#"{"HostConfig":{"Mounts":[{"type":"BIND","source":"/home/../etc"}]}}"#,
            r#"{"Binds":["/etc:/x"]}"#,
            r#"{"HostConfig":{"Binds":["/home/a:/a"]},"HOSTCONFIG":{"BINDS":["/etc:/x"]}}"#,
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/etc"}}}}]}}"#,
        ] {
            assert!(translate(body).is_err(), "{body}");
        }
    }

    #[test]
    fn a_volume_create_bind_device_is_translated_or_refused() {
        assert_eq!(
            translate_as(
                BodyKind::VolumeCreate,
                r#"{"Name":"v","Driver":"local","DriverOpts":{"type":"none","o":"bind","device":"/home/a/../b"}}"#,
            )
            .unwrap(),
            r#"{"DriverOpts":{"type":"none","o":"bind","device":"/mnt/home/b"},"Name":"v","Driver":"local"}"#
        );
        // Not a bind: the device is not a host path berth maps.
        let tmpfs = r#"{"DriverOpts":{"type":"tmpfs","device":"tmpfs"},"Name":"t"}"#;
        assert_eq!(translate_as(BodyKind::VolumeCreate, tmpfs).unwrap(), tmpfs);
        assert_eq!(
            translate_as(
                BodyKind::VolumeCreate,
                r#"{"Name":"v","DriverOpts":{"o":"bind","device":"/etc"}}"#,
            ),
            Err((HostPathKind::VolumeDevice, "/etc".to_owned()))
        );
    }
}
