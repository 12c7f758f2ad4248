//! Rewriting `POST /containers/create` bodies for an engine with path mappings: every
//! host path the engine would mount (`Binds` sources, `Mounts[]` of type bind, local
//! volumes that bind a `device`) translated from the host's view to the engine's, on
//! the one body model ([`berth_policy::DockerBody`]), so every spelling dockerd reads is
//! translated and the body forwarded is the model encoded again.

use berth_policy::DockerBody;

use crate::paths::PathTranslator;

/// Translates every host path in `body` with `paths`; the error is a host path that no
/// mapping covers.
pub(crate) fn translate_binds(
    body: &mut DockerBody<'_>,
    paths: &PathTranslator,
) -> Result<(), String> {
    body.rewrite_host_paths(|_, host| match paths.to_guest(host) {
        Some(guest) => Ok(Some(guest)),
        None => Err(host.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use berth_policy::BodyKind;

    use super::*;

    fn paths() -> PathTranslator {
        PathTranslator::new([("/home".into(), "/mnt/home".into())])
    }

    fn translate(body: &str) -> Result<String, String> {
        let mut model = DockerBody::parse(BodyKind::ContainerCreate, body.as_bytes()).unwrap();
        translate_binds(&mut model, &paths())?;
        Ok(String::from_utf8(model.encode()).unwrap())
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
}
