use super::*;

fn read(op: Operation, body: &str) -> Result<BodyFacts, String> {
    facts(op, body.as_bytes())
}

fn create(body: &str) -> BodyFacts {
    read(Operation::ContainerCreate, body).unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[test]
fn privileged_is_read_through_folded_keys_and_merged_duplicates() {
    let rows = [
        (
            r#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#,
            true,
        ),
        (r#"{"HostConfig":{"Privileged":false}}"#, false),
        (r#"{"hostconfig":{"privileged":true}}"#, true),
        (r#"{"HOSTCONFIG":{"PRIVILEGED":true}}"#, true),
        (r#"{"Ho\u017ftConfig":{"Privileged":true}}"#, true),
        // Two HostConfig objects merge field by field (notes 11.2).
        (
            r#"{"HostConfig":{"Privileged":false},"hostconfig":{"privileged":true}}"#,
            true,
        ),
        (
            r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}"#,
            true,
        ),
        (
            r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Privileged":false}}"#,
            false,
        ),
        // null leaves a bool alone, but resets the HostConfig pointer.
        (
            r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Privileged":null}}"#,
            true,
        ),
        (
            r#"{"HostConfig":{"Privileged":true},"HostConfig":null}"#,
            false,
        ),
        (
            r#"{"HostConfig":{"Privileged":true},"HostConfig":null,"HostConfig":{}}"#,
            false,
        ),
        (
            r#"{"HostConfig":{"Privileged":false,"Privileged":true}}"#,
            true,
        ),
        // dockerd 20.10 reads HostConfig fields at the top level too.
        (r#"{"Image":"busybox","Privileged":true}"#, true),
        // ... only when HostConfig is absent (or null).
        (r#"{"privileged":true,"HostConfig":{}}"#, false),
        (r#"{"privileged":true,"HostConfig":null}"#, true),
    ];
    for (body, want) in rows {
        assert_eq!(create(body).privileged, want, "{body}");
    }
}

#[test]
fn unreadable_bodies_are_errors() {
    let rows = [
        "",
        "  \n",
        "[]",
        "null",
        r#"{"a":1} {"b":2}"#,
        r#"{"HostConfig":{"Privileged":"true"}}"#,
        r#"{"HostConfig":{"Privileged":1}}"#,
        r#"{"HostConfig":"privileged"}"#,
        r#"{"HostConfig":{"Binds":[null]}}"#,
        r#"{"HostConfig":{"Binds":"/etc:/x"}}"#,
        r#"{"HostConfig":{"CapAdd":[1]}}"#,
        r#"{"HostConfig":{"Mounts":[null]}}"#,
        r#"{"HostConfig":{"Sysctls":{"a":1}}}"#,
        // A second Mounts would decode into the first one's elements.
        r#"{"HostConfig":{"Mounts":[{"Type":"bind"}]},"hostconfig":{"mounts":[]}}"#,
        r#"{"HostConfig":{"Mounts":[{}],"Mounts":[{"Source":"/etc"}]}}"#,
        r#"{"HostConfig":{"Devices":[{}],"Devices":[{}]}}"#,
        r#"{"HostConfig":{"DeviceRequests":[{}],"DeviceRequests":[{}]}}"#,
        // Keys that only Go 1.21 and later fold.
        r#"{"HostConfig":{"Pr\u0131vileged":true}}"#,
        r#"{"HostConf\u0131g":{}}"#,
        "{\"Image\":\"\u{0}\",",
    ];
    for body in rows {
        assert!(read(Operation::ContainerCreate, body).is_err(), "{body:?}");
    }
    assert!(facts(Operation::ContainerCreate, b"{\"Image\":\"\xff\"}").is_err());
}

#[test]
fn cap_add_is_a_string_or_a_list_and_normalized_like_moby() {
    let rows: [(&str, &[&str]); 8] = [
        (
            r#"{"HostConfig":{"CapAdd":"sys_admin"}}"#,
            &["CAP_SYS_ADMIN"],
        ),
        (
            r#"{"HostConfig":{"CapAdd":["CAP_SYS_ADMIN"]}}"#,
            &["CAP_SYS_ADMIN"],
        ),
        (r#"{"HostConfig":{"CapAdd":["all"]}}"#, &["ALL"]),
        (
            r#"{"HostConfig":{"CapAdd":["\u017fys_admin"]}}"#,
            &["CAP_SYS_ADMIN"],
        ),
        (
            r#"{"HostConfig":{"capadd":["net_admin"]}}"#,
            &["CAP_NET_ADMIN"],
        ),
        (
            r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]},"HostConfig":{"CapAdd":["NET_RAW"]}}"#,
            &["CAP_NET_RAW"],
        ),
        (
            r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"],"CapAdd":null}}"#,
            &[],
        ),
        // Capabilities replaces the default set: only what it adds beyond it counts.
        (
            r#"{"HostConfig":{"Capabilities":["CAP_CHOWN","CAP_SYS_ADMIN"]}}"#,
            &["CAP_SYS_ADMIN"],
        ),
    ];
    for (body, want) in rows {
        assert_eq!(create(body).caps, want, "{body}");
    }
}

#[test]
fn host_paths_come_from_absolute_binds_bind_mounts_and_bind_volumes() {
    let rows: [(&str, &[&str]); 7] = [
        (
            r#"{"HostConfig":{"Binds":["/srv/a:/a","vol:/b","/c","rel/x:/y","/etc:/e:ro"]}}"#,
            &["/srv/a", "/etc"],
        ),
        (
            r#"{"HostConfig":{"Binds":["/etc:/e"]},"HostConfig":{"Binds":["/srv:/s"]}}"#,
            &["/srv"],
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/x"},{"Type":"volume","Source":"v","Target":"/y"},{"Type":"tmpfs","Target":"/t"}]}}"#,
            &["/etc"],
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"BIND","Source":"relative","Target":"/x"}]}}"#,
            &["relative"],
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/x","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/etc"}}}}]}}"#,
            &["/etc"],
        ),
        // Nested pointers merge; a later null resets them.
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"o":"rbind","device":"/etc"}}},"volumeoptions":{"DriverConfig":{"Name":"local"}}}]}}"#,
            &["/etc"],
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/etc"}}},"VolumeOptions":null}]}}"#,
            &[],
        ),
    ];
    for (body, want) in rows {
        assert_eq!(create(body).bind_sources, want, "{body}");
    }
}

#[test]
fn host_namespaces_are_read_from_every_mode_and_the_host_endpoint() {
    let f = create(
        r#"{"HostConfig":{"NetworkMode":"bridge","PidMode":"host","IpcMode":" HOST ","UTSMode":"host","UsernsMode":"","CgroupnsMode":"host"}}"#,
    );
    assert_eq!(
        f.host_modes,
        [
            Namespace::Pid,
            Namespace::Ipc,
            Namespace::Uts,
            Namespace::Cgroupns
        ]
    );
    let f = create(r#"{"HostConfig":{"NetworkMode":"container:x","UsernsMode":"host"}}"#);
    assert_eq!(f.host_modes, [Namespace::Userns]);
    let f = create(r#"{"NetworkingConfig":{"EndpointsConfig":{"host":{}}}}"#);
    assert_eq!(f.host_modes, [Namespace::Network]);
    let f =
        create(r#"{"NetworkingConfig":{"EndpointsConfig":{"host":{}}},"NetworkingConfig":null}"#);
    assert_eq!(f.host_modes, []);
}

#[test]
fn security_options_that_give_up_confinement_are_named() {
    let f = create(
        r#"{"HostConfig":{"SecurityOpt":["no-new-privileges","apparmor=docker-default","seccomp=unconfined","apparmor:unconfined","label=disable","label=type:spc_t","seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}","seccomp=builtin","systempaths=unconfined","writable-cgroups=true","Seccomp=Unconfined"],"MaskedPaths":[]}}"#,
    );
    assert_eq!(
        f.unconfined,
        [
            "security option seccomp=unconfined",
            "security option apparmor=unconfined",
            "security option label=disable",
            "security option label=type:spc_t",
            "custom seccomp profiles",
            "security option systempaths=unconfined",
            "security option writable-cgroups=true",
            "security option seccomp=unconfined",
            "MaskedPaths (unmasked /proc paths)",
        ]
    );
    let f = create(r#"{"HostConfig":{"SecurityOpt":["no-new-privileges"],"MaskedPaths":null}}"#);
    assert!(f.unconfined.is_empty());
}

#[test]
fn devices_sysctls_images_and_users_are_collected() {
    let f = create(
        r#"{"Image":"busybox","User":"1000","HostConfig":{"Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/xvda"}],"DeviceRequests":[{"Count":-1}],"DeviceCgroupRules":["c 1:3 rwm"],"Sysctls":{"net.ipv4.ip_forward":"1","kernel/shmmax":"1"},"Mounts":[{"Type":"image","Source":"alpine","Target":"/i"}]}}"#,
    );
    assert_eq!(
        f.devices,
        [
            "device /dev/sda",
            "device requests (--gpus)",
            "device cgroup rule \"c 1:3 rwm\""
        ]
    );
    assert_eq!(f.sysctls, ["net.ipv4.ip_forward", "kernel.shmmax"]);
    assert_eq!(f.images, ["busybox", "alpine"]);
    assert_eq!(f.users, ["1000"]);
    let f = create(r#"{"Sysctls":{"a":"1"},"sysctls":{"b":"2"},"Image":"x","image":"y"}"#);
    assert_eq!(f.sysctls, ["a", "b"]);
    assert_eq!(f.images, ["y"]);
}

#[test]
fn exec_create_reads_its_own_privileged_and_user() {
    let f = read(
        Operation::ExecCreate,
        r#"{"Cmd":["sh"],"privileged":true,"USER":"root"}"#,
    )
    .unwrap();
    assert!(f.privileged);
    assert_eq!(f.users, ["root"]);
    let f = read(Operation::ExecCreate, r#"{"Cmd":["sh"]}"#).unwrap();
    assert!(!f.privileged);
    assert_eq!(f.users, [""]);
}

#[test]
fn update_reads_resources_only() {
    let f = read(
        Operation::ContainerUpdate,
        r#"{"Memory":1,"Privileged":true,"Devices":[{"PathOnHost":"/dev/mem"}]}"#,
    )
    .unwrap();
    assert!(!f.privileged);
    assert_eq!(f.devices, ["device /dev/mem"]);
}

#[test]
fn volume_create_binds_only_with_bind_options() {
    let rows: [(&str, &[&str]); 5] = [
        (
            r#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/etc"}}"#,
            &["/etc"],
        ),
        (
            r#"{"DriverOpts":{"o":"ro,bind","device":"/etc"}}"#,
            &["/etc"],
        ),
        (
            r#"{"DriverOpts":{"o":"addr=1.2.3.4","type":"nfs","device":":/x"}}"#,
            &[],
        ),
        (
            r#"{"DriverOpts":{"o":"bind"},"driveropts":{"device":"/etc"}}"#,
            &["/etc"],
        ),
        (
            r#"{"DriverOpts":{"o":"bind","device":"/etc"},"DriverOpts":null}"#,
            &[],
        ),
    ];
    for (body, want) in rows {
        assert_eq!(
            read(Operation::VolumeCreate, body).unwrap().bind_sources,
            want,
            "{body}"
        );
    }
}

fn encoded(kind: BodyKind, body: &str) -> String {
    let model = DockerBody::parse(kind, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
    let out = String::from_utf8(model.encode()).unwrap();
    // Encoding is stable, and reads the same.
    let again = DockerBody::parse(kind, out.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(again.encode()).unwrap(), out, "{body}");
    assert_eq!(again.facts(), model.facts(), "{body}");
    out
}

#[test]
fn encoding_gives_one_canonical_key_per_field_and_keeps_the_rest_as_sent() {
    let rows = [
        // Duplicates and folded spellings merge into one canonical key.
        (
            r#"{"hostconfig":{"binds":["/a:/b"],"Memory":1},"HO\u017fTCONFIG":{"Memory" : 2.50},"image":"x","Labels":{"a":"1"}}"#,
            r#"{"Image":"x","HostConfig":{"Binds":["/a:/b"],"Memory":1,"Memory":2.50},"Labels":{"a":"1"}}"#,
        ),
        // null resets the pointer: what came before it is gone.
        (
            r#"{"HostConfig":{"Privileged":true,"Dns":["1.1.1.1"]},"HostConfig":null,"HostConfig":{"CapAdd":"chown"}}"#,
            r#"{"HostConfig":{"CapAdd":["chown"]}}"#,
        ),
        (
            r#"{"HostConfig":{"Binds":["/a:/b"]},"HostConfig":null}"#,
            r#"{}"#,
        ),
        // Top-level HostConfig fields stay at the top level when HostConfig is absent...
        (
            r#"{"binds":["/a:/b"],"Privileged":false,"privileged":true,"Memory":5}"#,
            r#"{"Privileged":true,"Binds":["/a:/b"],"Memory":5}"#,
        ),
        // ... and are dropped when it is there (dockerd ignores them; Memory it merges).
        (
            r#"{"Binds":["/etc:/x"],"Memory":5,"HostConfig":{"NetworkMode":"none"}}"#,
            r#"{"HostConfig":{"NetworkMode":"none"},"Memory":5}"#,
        ),
        // Nested structs merge; maps add; unknown members keep their text.
        (
            r#"{"HostConfig":{"Mounts":[{"type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind"}}},"volumeoptions":{"NoCopy":true,"DriverConfig":{"Name":"local","options":{"device":"/d"}}}}]},"NetworkingConfig":{"EndpointsConfig":{"a":{"x":1}}},"networkingconfig":{"endpointsconfig":{"a":{"y":2},"b":null}}}"#,
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/d"},"Name":"local"},"NoCopy":true}}]},"NetworkingConfig":{"EndpointsConfig":{"a":{"y":2},"b":null}}}"#,
        ),
        // Escapes in keys are decoded; strings are written as JSON.
        (
            r#"{"Host\u0043onfig":{"\u0042inds":["/a\"b:/c"]},"x\ny":"\u00e9"}"#,
            r#"{"HostConfig":{"Binds":["/a\"b:/c"]},"x\ny":"\u00e9"}"#,
        ),
    ];
    for (body, want) in rows {
        assert_eq!(encoded(BodyKind::ContainerCreate, body), want, "{body}");
    }
    assert_eq!(
        encoded(
            BodyKind::ExecCreate,
            r#"{"privileged":true,"PRIVILEGED":false,"user":"0","Cmd":["sh"]}"#
        ),
        r#"{"User":"0","Privileged":false,"Cmd":["sh"]}"#
    );
    assert_eq!(
        encoded(
            BodyKind::ContainerUpdate,
            r#"{"devices":[{"pathonhost":"/dev/x"}],"Privileged":true}"#
        ),
        r#"{"Devices":[{"PathOnHost":"/dev/x"}],"Privileged":true}"#
    );
    assert_eq!(
        encoded(
            BodyKind::VolumeCreate,
            r#"{"Name":"v","driveropts":{"o":"bind"},"DriverOpts":{"device":"/d"}}"#
        ),
        r#"{"DriverOpts":{"o":"bind","device":"/d"},"Name":"v"}"#
    );
    assert_eq!(encoded(BodyKind::ContainerStart, " "), "");
}

#[test]
fn host_paths_are_rewritten_where_dockerd_reads_them() {
    let body = r#"{"Binds":["/top:/t"],"hostconfig":{"binds":["/a:/a:ro","vol:/v","/lone"],"Mounts":[{"Type":"bind","Source":"/m"},{"Type":"volume","Source":"v","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/dev-dir"}}}},{"Type":"tmpfs","Source":"/tmpfs"}]}}"#;
    let mut model = DockerBody::parse(BodyKind::ContainerCreate, body.as_bytes()).unwrap();
    let mut seen = Vec::new();
    model
        .rewrite_host_paths(|kind, path| {
            seen.push((kind, path.to_owned()));
            Ok::<_, ()>(Some(format!("/g{path}")))
        })
        .unwrap();
    assert_eq!(
        seen,
        [
            (HostPathKind::Bind, "/a".to_owned()),
            (HostPathKind::BindMount, "/m".to_owned()),
            (HostPathKind::VolumeDevice, "/dev-dir".to_owned()),
        ]
    );
    assert_eq!(
        String::from_utf8(model.encode()).unwrap(),
        r#"{"HostConfig":{"Binds":["/g/a:/a:ro","vol:/v","/lone"],"Mounts":[{"Type":"bind","Source":"/g/m"},{"Type":"volume","Source":"v","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/g/dev-dir"}}}},{"Type":"tmpfs","Source":"/tmpfs"}]}}"#
    );
    // Without HostConfig, the top-level Binds are the ones dockerd mounts.
    let mut model =
        DockerBody::parse(BodyKind::ContainerCreate, br#"{"BINDS":["/top:/t"]}"#).unwrap();
    model
        .rewrite_host_paths(|_, p| Ok::<_, ()>(Some(format!("/g{p}"))))
        .unwrap();
    assert_eq!(model.encode(), br#"{"Binds":["/g/top:/t"]}"#);
}

#[test]
fn update_limits_are_read_as_dockerd_reads_them() {
    let limits = |body: &str| {
        DockerBody::parse(BodyKind::ContainerUpdate, body.as_bytes())
            .map(|b| b.update_limits().unwrap())
            .map_err(|e| e.to_string())
    };
    let l =
        limits(r#"{"Memory":1,"mEMORY":2,"memoryswap":3,"NanoCPUs":4,"cpuquota":5,"CpuPeriod":6}"#)
            .unwrap();
    assert_eq!(
        (
            l.memory,
            l.memory_swap,
            l.nano_cpus,
            l.cpu_quota,
            l.cpu_period
        ),
        (2, 3, 4, 5, 6)
    );
    // `null` leaves Go's zero; the last of repeated keys wins.
    assert_eq!(limits(r#"{"Memory":7,"Memory":null}"#).unwrap().memory, 7);
    assert_eq!(limits(r#"{"Memory":-1}"#).unwrap().memory, -1);
    assert_eq!(limits("{}").unwrap(), ResourceLimits::default());
    // What Go refuses for an int64, refused.
    for bad in [
        r#"{"Memory":1e9}"#,
        r#"{"Memory":1.0}"#,
        r#"{"Memory":"1"}"#,
        r#"{"Memory":99999999999999999999}"#,
    ] {
        assert!(limits(bad).is_err(), "{bad}");
    }
    // The limits go to dockerd under one canonical key each.
    assert_eq!(
        encoded(
            BodyKind::ContainerUpdate,
            r#"{"memory":1,"MEMORY":2,"RestartPolicy":{}}"#
        ),
        r#"{"Memory":2,"RestartPolicy":{}}"#
    );
}
