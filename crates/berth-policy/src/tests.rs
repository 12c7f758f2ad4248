//! Policy-level tables: one denied and one allowed variant per rule, bypass attempts,
//! client-specific rules, read-only mode, messages and parse errors.

use std::sync::Arc;

use crate::hostpath::FakeResolver;
use crate::{AccessPolicy, ClientIdentity, Decision, PolicyError, PolicyRecorder, RequestFacts};

const STRICT: &str = include_str!("../examples/policy-strict.toml");
const READONLY: &str = include_str!("../examples/policy-readonly.toml");

const BODY_RULES: &str = r#"
default = "allow"

[[limit]]
name = "no-privileged"
privileged = false

[[limit]]
name = "caps"
cap_add = ["NET_ADMIN", "cap_sys_time"]

[[limit]]
name = "no-devices"
devices = false

[[limit]]
name = "no-host"
host_network = false
host_pid = false
host_ipc = false
host_uts = false
host_userns = false
host_cgroupns = false

[[limit]]
name = "binds"
bind_roots = ["/srv", "/home/ci/"]

[[limit]]
name = "no-unconfined"
unconfined = false

[[limit]]
name = "sysctls"
sysctls = ["net.ipv4.*"]

[[limit]]
name = "images"
images = ["busybox:*", "docker.io/library/alpine", "ghcr.io/acme/**"]

[[limit]]
name = "users"
users = ["", "1000", "app"]
"#;

fn unix(uid: u32) -> ClientIdentity {
    ClientIdentity::Unix {
        uid,
        gid: uid,
        pid: Some(42),
    }
}

fn policy(text: &str) -> AccessPolicy {
    AccessPolicy::from_toml(text)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_resolver(Arc::new(FakeResolver {
            links: vec![("/srv/escape".into(), "/etc".into())],
        }))
}

/// Runs the gateway's two steps: check_request, then check_body when asked.
fn decide(
    p: &AccessPolicy,
    client: &ClientIdentity,
    method: &str,
    path: &str,
    body: &str,
) -> Decision {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut req = RequestFacts::new(method, path, client);
    if !query.is_empty() {
        req = req.with_query(query);
    }
    match p.check_request(&req) {
        Decision::NeedsBody { limit } => {
            assert_eq!(limit, p.max_body());
            p.check_body(&req, body.as_bytes())
        }
        other => other,
    }
}

fn rule_of(d: &Decision) -> Option<&str> {
    match d {
        Decision::Deny { rule, .. } => Some(rule),
        _ => None,
    }
}

fn create(p: &AccessPolicy, host_config: &str) -> Decision {
    let body = format!(r#"{{"Image":"busybox:1.36","HostConfig":{host_config}}}"#);
    decide(p, &unix(1000), "POST", "/v1.41/containers/create", &body)
}

#[test]
fn each_body_rule_denies_its_fact_and_allows_the_safe_variant() {
    let p = policy(BODY_RULES);
    let rows: &[(&str, &str, Option<&str>)] = &[
        (
            r#"{"Privileged":true}"#,
            "privileged",
            Some("no-privileged"),
        ),
        (r#"{"Privileged":false}"#, "privileged", None),
        (r#"{"CapAdd":["SYS_ADMIN"]}"#, "caps", Some("caps")),
        (r#"{"CapAdd":["CAP_SYS_ADMIN"]}"#, "caps", Some("caps")),
        (r#"{"CapAdd":["sys_admin"]}"#, "caps", Some("caps")),
        (r#"{"CapAdd":["ALL"]}"#, "caps", Some("caps")),
        (r#"{"CapAdd":"sys_admin"}"#, "caps", Some("caps")),
        (
            r#"{"Capabilities":["CAP_SYS_ADMIN"]}"#,
            "caps",
            Some("caps"),
        ),
        (r#"{"CapAdd":["net_admin","SYS_TIME"]}"#, "caps", None),
        (r#"{"Capabilities":["CAP_CHOWN"]}"#, "caps", None),
        (
            r#"{"Devices":[{"PathOnHost":"/dev/sda"}]}"#,
            "devices",
            Some("no-devices"),
        ),
        (
            r#"{"DeviceRequests":[{"Count":-1}]}"#,
            "devices",
            Some("no-devices"),
        ),
        (
            r#"{"DeviceCgroupRules":["c *:* rwm"]}"#,
            "devices",
            Some("no-devices"),
        ),
        (r#"{"Devices":[]}"#, "devices", None),
        (r#"{"NetworkMode":"host"}"#, "network", Some("no-host")),
        (r#"{"PidMode":"host"}"#, "pid", Some("no-host")),
        (r#"{"IpcMode":"host"}"#, "ipc", Some("no-host")),
        (r#"{"UTSMode":"host"}"#, "uts", Some("no-host")),
        (r#"{"UsernsMode":"host"}"#, "userns", Some("no-host")),
        (r#"{"CgroupnsMode":"host"}"#, "cgroupns", Some("no-host")),
        (
            r#"{"NetworkMode":"bridge","PidMode":"container:x"}"#,
            "namespaces",
            None,
        ),
        (r#"{"Binds":["/etc:/host-etc:ro"]}"#, "binds", Some("binds")),
        (r#"{"Binds":["/srv/../etc:/x"]}"#, "binds", Some("binds")),
        (
            r#"{"Binds":["/srv/data/../../etc:/x"]}"#,
            "binds",
            Some("binds"),
        ),
        (r#"{"Binds":["//etc//:/x"]}"#, "binds", Some("binds")),
        (r#"{"Binds":["/srvx:/x"]}"#, "binds", Some("binds")),
        (
            r#"{"Binds":["/srv/escape/shadow:/x"]}"#,
            "binds",
            Some("binds"),
        ),
        (
            r#"{"Binds":["/srv/data:/data","/home/ci/w:/w:rw"]}"#,
            "binds",
            None,
        ),
        (r#"{"Binds":["/srv//data/./x/:/data"]}"#, "binds", None),
        (r#"{"Binds":["/srv/a/../b:/b"]}"#, "binds", None),
        (
            r#"{"Binds":["etc:/etc","../etc:/x","/anon"]}"#,
            "binds",
            None,
        ),
        (
            r#"{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/x"}]}"#,
            "binds",
            Some("binds"),
        ),
        (
            r#"{"Mounts":[{"Type":"bind","Source":"etc","Target":"/x"}]}"#,
            "binds",
            Some("binds"),
        ),
        (
            r#"{"Mounts":[{"Type":"volume","Source":"etc","Target":"/x"}]}"#,
            "binds",
            None,
        ),
        (
            r#"{"Mounts":[{"Type":"bind","Source":"/srv/x","Target":"/x"}]}"#,
            "binds",
            None,
        ),
        (
            r#"{"Mounts":[{"Type":"volume","Source":"v","Target":"/x","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"o":"bind","device":"/etc"}}}}]}"#,
            "binds",
            Some("binds"),
        ),
        (
            r#"{"SecurityOpt":["seccomp=unconfined"]}"#,
            "unconfined",
            Some("no-unconfined"),
        ),
        (
            r#"{"SecurityOpt":["apparmor:unconfined"]}"#,
            "unconfined",
            Some("no-unconfined"),
        ),
        (
            r#"{"SecurityOpt":["label=disable"]}"#,
            "unconfined",
            Some("no-unconfined"),
        ),
        (
            r#"{"SecurityOpt":["no-new-privileges","apparmor=docker-default"]}"#,
            "unconfined",
            None,
        ),
        (
            r#"{"Sysctls":{"kernel.shmmax":"1"}}"#,
            "sysctls",
            Some("sysctls"),
        ),
        (
            r#"{"Sysctls":{"net.ipv4.ip_forward":"1"}}"#,
            "sysctls",
            None,
        ),
        (
            r#"{"Sysctls":{"net/ipv4/ip_forward":"1"}}"#,
            "sysctls",
            None,
        ),
        (
            r#"{"Mounts":[{"Type":"image","Source":"evil","Target":"/i"}]}"#,
            "images",
            Some("images"),
        ),
        (r#"{}"#, "nothing", None),
    ];
    for (host_config, what, want) in rows {
        let d = create(&p, host_config);
        assert_eq!(rule_of(&d), *want, "{what}: {host_config} → {d:?}");
    }
}

#[test]
fn images_users_and_exec_are_judged_outside_host_config() {
    let p = policy(BODY_RULES);
    let c = unix(1000);
    let rows: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "/containers/create",
            r#"{"Image":"busybox"}"#,
            "busybox:* includes latest",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"busybox:1.36"}"#,
            "any busybox tag",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"docker.io/library/busybox:1"}"#,
            "normalized",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"alpine"}"#,
            "alpine = :latest",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"alpine:3"}"#,
            "only alpine:latest",
            Some("images"),
        ),
        (
            "/containers/create",
            r#"{"Image":"ghcr.io/acme/team/app:v1"}"#,
            "prefix",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"ghcr.io/evil/app:v1"}"#,
            "other org",
            Some("images"),
        ),
        (
            "/containers/create",
            r#"{"image":"evil:1","Image":"busybox:1"}"#,
            "last wins",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"busybox:1","image":"evil:1"}"#,
            "case fold",
            Some("images"),
        ),
        (
            "/containers/create",
            r#"{"Image":"abc"}"#,
            "could be an image ID",
            Some("images"),
        ),
        (
            "/containers/create",
            r#"{"Image":"BUSYBOX"}"#,
            "invalid",
            Some("images"),
        ),
        (
            "/containers/create",
            r#"{"Image":"busybox:1","User":"root"}"#,
            "root",
            Some("users"),
        ),
        (
            "/containers/create",
            r#"{"Image":"busybox:1","User":"1000:1000"}"#,
            "uid",
            None,
        ),
        (
            "/containers/create",
            r#"{"Image":"busybox:1","User":"app"}"#,
            "name",
            None,
        ),
        (
            "/containers/web/exec",
            r#"{"Cmd":["sh"],"Privileged":true}"#,
            "priv exec",
            Some("no-privileged"),
        ),
        (
            "/containers/web/exec",
            r#"{"Cmd":["sh"],"pRiViLeGeD":true}"#,
            "priv exec folded",
            Some("no-privileged"),
        ),
        (
            "/containers/web/exec",
            r#"{"Cmd":["sh"],"User":"0"}"#,
            "root exec",
            Some("users"),
        ),
        (
            "/containers/web/exec",
            r#"{"Cmd":["sh"],"User":"1000"}"#,
            "exec",
            None,
        ),
        (
            "/containers/web/update",
            r#"{"Devices":[{"PathOnHost":"/dev/mem"}]}"#,
            "update",
            Some("no-devices"),
        ),
        (
            "/containers/web/update",
            r#"{"Memory":1048576}"#,
            "update",
            None,
        ),
        (
            "/volumes/create",
            r#"{"Name":"v","DriverOpts":{"o":"bind","device":"/etc"}}"#,
            "volume",
            Some("binds"),
        ),
        (
            "/volumes/create",
            r#"{"Name":"v","DriverOpts":{"o":"bind","device":"/srv/v"}}"#,
            "volume",
            None,
        ),
        ("/volumes/create", r#"{"Name":"v"}"#, "volume", None),
    ];
    for (path, body, what, want) in rows {
        let d = decide(&p, &c, "POST", path, body);
        assert_eq!(rule_of(&d), *want, "{what}: {path} {body} → {d:?}");
    }
}

#[test]
fn case_and_duplicate_key_bypasses_are_refused() {
    let p = policy(STRICT);
    let c = unix(1000);
    let bypasses = [
        r#"{"Image":"busybox","hostconfig":{"privileged":true}}"#,
        r#"{"Image":"busybox","HOSTCONFIG":{"PRIVILEGED":true}}"#,
        r#"{"Image":"busybox","HostConfig":{"Privileged":false},"hostconfig":{"privileged":true,"binds":["/etc:/host-etc:ro"]}}"#,
        r#"{"Image":"busybox","HostConfig":{"Privileged":false},"HostConfig":{"Privileged":true}}"#,
        r#"{"Image":"busybox","HostConfig":{"Privileged":false,"Privileged":true}}"#,
        r#"{"Image":"busybox","Ho\u017ftConfig":{"Privileged":true}}"#,
        r#"{"Image":"busybox","Privileged":true}"#,
        r#"{"Image":"busybox","HostConfig":null,"binds":["/etc:/x"]}"#,
        r#"{"Image":"busybox","HostConfig":{"Pr\u0131vileged":false}}"#,
        r#"{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/x"}]},"HostConfig":{"Mounts":[{"Type":"bind"}]}}"#,
        r#"{"Image":"busybox","HostConfig":{"NetworkMode":"bridge"},"hostconfig":{"networkmode":"host"}}"#,
        r#"{"Image":"busybox","HostConfig":{"Networ\u212aMode":"host"}}"#,
        r#"{"Image":"busybox","HostConfig":{"CapAdd":["NET_RAW"]},"HostConfig":{"capadd":"sys_admin"}}"#,
    ];
    for body in bypasses {
        let d = decide(&p, &c, "POST", "/v1.41/containers/create", body);
        assert!(d.is_deny(), "{body} → {d:?}");
    }
    // dockerd ignores top-level HostConfig fields when HostConfig is there (and berth
    // drops them from what it forwards).
    let ignored = r#"{"Image":"busybox","HostConfig":{},"binds":["/etc:/x"]}"#;
    assert!(decide(&p, &c, "POST", "/containers/create", ignored).is_allow());
    // The same keys, merged to something harmless, pass.
    let fine = r#"{"Image":"busybox","HostConfig":{"Privileged":true},"hostconfig":{"privileged":false,"Binds":["/srv/a:/a"]}}"#;
    assert_eq!(
        decide(&p, &c, "POST", "/containers/create", fine),
        Decision::Allow
    );
}

#[test]
fn bodies_that_cannot_be_judged_are_refused_when_a_limit_applies() {
    let p = policy(STRICT);
    let c = unix(1000);
    let over = format!(
        r#"{{"Image":"busybox","Env":["{}"]}}"#,
        "x".repeat(p.max_body())
    );
    for body in [
        "",
        "{",
        "[]",
        r#"{"HostConfig":{"Privileged":"yes"}}"#,
        over.as_str(),
    ] {
        let d = decide(&p, &c, "POST", "/containers/create", body);
        assert_eq!(rule_of(&d), Some("no-privileged"), "{body:.40} → {d:?}");
    }
    let empty = decide(&p, &c, "POST", "/containers/create", "");
    assert_eq!(
        empty.denial_message().unwrap(),
        "berth policy: rule \"no-privileged\" denies unreadable request bodies (the body is empty)"
    );
    // No limit judges a stop: no body is asked for.
    let req = RequestFacts::new("POST", "/containers/web/stop", &c);
    assert_eq!(p.check_request(&req), Decision::Allow);
}

#[test]
fn start_bodies_of_old_api_versions_are_judged_like_create() {
    let p = policy(STRICT);
    let c = unix(1000);
    let rows: &[(&str, &str, Option<&str>)] = &[
        ("/v1.41/containers/web/start", "", None),
        (
            "/v1.23/containers/web/start",
            r#"{"Binds":["/srv/x:/x"]}"#,
            None,
        ),
        (
            "/v1.23/containers/web/start",
            r#"{"Privileged":true}"#,
            Some("no-privileged"),
        ),
        (
            "/v1.23/containers/web/start",
            r#"{"HostConfig":{"Binds":["/etc:/x"]}}"#,
            Some("binds-under-srv"),
        ),
        (
            "/containers/web/start",
            "junk that is not json",
            Some("no-privileged"),
        ),
    ];
    for (path, body, want) in rows {
        let d = decide(&p, &c, "POST", path, body);
        assert_eq!(rule_of(&d), *want, "{path} {body} → {d:?}");
    }
}

#[test]
fn denial_messages_name_the_rule_and_what_it_denies() {
    let p = policy(STRICT);
    let d = create(&p, r#"{"Privileged":true}"#);
    assert_eq!(
        d.denial_message().unwrap(),
        "berth policy: rule \"no-privileged\" denies privileged containers"
    );
    let d = create(&p, r#"{"Binds":["/srv/escape/shadow:/x"]}"#);
    assert_eq!(
        d.denial_message().unwrap(),
        "berth policy: rule \"binds-under-srv\" denies bind mounts outside the allowed roots \
         (/srv/escape/shadow (resolves to /etc/shadow))"
    );
    let d = decide(&p, &unix(0), "POST", "/v1.41/services/create", "{}");
    assert_eq!(
        d.denial_message().unwrap(),
        "berth policy: rule \"no-services-or-plugins\" denies POST /services/create (services section)"
    );
    assert_eq!(Decision::Allow.denial_message(), None);
}

#[test]
fn read_only_mode_allows_get_and_head_only() {
    let p = policy(READONLY);
    let c = unix(1000);
    let rows = [
        ("GET", "/v1.41/containers/json", true),
        ("HEAD", "/_ping", true),
        ("GET", "/containers/web/logs", true),
        ("GET", "/containers/web/attach/ws", false),
        ("POST", "/containers/create", false),
        ("POST", "/containers/web/start", false),
        ("DELETE", "/containers/web", false),
        ("PUT", "/containers/web/archive", false),
        ("get", "/containers/json", false),
    ];
    for (method, path, allowed) in rows {
        let d = decide(&p, &c, method, path, "");
        assert_eq!(d.is_allow(), allowed, "{method} {path} → {d:?}");
        if !allowed {
            assert_eq!(rule_of(&d), Some("read_only"));
        }
    }
}

#[test]
fn endpoint_rules_are_first_match_by_client_section_method_and_path() {
    let p = policy(
        r#"
[[rule]]
name = "basics"
action = "allow"
sections = ["ping", "version", "info", "events"]
methods = ["GET", "HEAD"]

[[rule]]
name = "exec-for-uid-1000"
action = "allow"
clients = ["uid:1000"]
sections = ["exec"]

[[rule]]
name = "no-exec"
action = "deny"
sections = ["exec"]

[[rule]]
name = "ci-by-certificate"
action = "allow"
clients = ["tls:CN=ci-*, O=acme"]
except = ["tls:CN=ci-untrusted, O=acme"]

[[rule]]
name = "no-container-delete"
action = "deny"
methods = ["delete"]
paths = ["/containers/**"]

[[rule]]
name = "containers-and-images"
action = "allow"
sections = ["containers", "images"]
"#,
    );
    let ci = ClientIdentity::Tls {
        subject: Some("CN=ci-7, O=acme".into()),
    };
    let untrusted = ClientIdentity::Tls {
        subject: Some("CN=ci-untrusted, O=acme".into()),
    };
    let rows: &[(&ClientIdentity, &str, &str, Option<&str>)] = &[
        (&unix(1000), "POST", "/containers/web/exec", None),
        (&unix(1000), "POST", "/exec/abc/start", None),
        (&unix(1001), "POST", "/containers/web/exec", Some("no-exec")),
        (
            &unix(1001),
            "POST",
            "/containers/web/db/exec",
            Some("no-exec"),
        ),
        (
            &unix(1001),
            "POST",
            "/containers/web%2Fexec",
            Some("no-exec"),
        ),
        (
            &unix(1001),
            "POST",
            "/v1.41/exec/abc/start",
            Some("no-exec"),
        ),
        (&unix(1001), "GET", "/containers/json", None),
        (
            &unix(1001),
            "DELETE",
            "/containers/web",
            Some("no-container-delete"),
        ),
        (&unix(1001), "GET", "/_ping", None),
        (&unix(1001), "POST", "/_ping", Some("default")),
        (&unix(1001), "GET", "/volumes", Some("default")),
        (&unix(1001), "GET", "/nonsense", Some("default")),
        (&ci, "GET", "/volumes", None),
        (&ci, "POST", "/containers/web/exec", Some("no-exec")),
        (&untrusted, "GET", "/volumes", Some("default")),
        (
            &ClientIdentity::Tls { subject: None },
            "GET",
            "/volumes",
            Some("default"),
        ),
        (&ClientIdentity::Internal, "GET", "/containers/json", None),
    ];
    for (client, method, path, want) in rows {
        let d = decide(&p, client, method, path, "");
        assert_eq!(rule_of(&d), *want, "{client} {method} {path} → {d:?}");
    }
}

#[test]
fn limits_apply_per_client() {
    let p = policy(
        r#"
default = "allow"

[[limit]]
name = "no-privileged-except-root"
except = ["uid:0"]
privileged = false

[[limit]]
name = "internal-images"
clients = ["internal", "gid:2000"]
images = ["ghcr.io/acme/**"]
"#,
    );
    let privileged = r#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#;
    let rows: &[(ClientIdentity, &str, Option<&str>)] = &[
        (unix(0), privileged, None),
        (unix(1000), privileged, Some("no-privileged-except-root")),
        (
            ClientIdentity::Internal,
            r#"{"Image":"busybox"}"#,
            Some("internal-images"),
        ),
        (
            unix(2000),
            r#"{"Image":"busybox"}"#,
            Some("internal-images"),
        ),
        (unix(1000), r#"{"Image":"busybox"}"#, None),
        (
            ClientIdentity::Internal,
            r#"{"Image":"ghcr.io/acme/x"}"#,
            None,
        ),
    ];
    for (client, body, want) in rows {
        let d = decide(&p, client, "POST", "/containers/create", body);
        assert_eq!(rule_of(&d), *want, "{client} {body} → {d:?}");
    }
}

#[test]
fn pulls_and_builds_are_judged_on_the_query_string() {
    let p = policy(
        r#"
default = "allow"

[[limit]]
name = "images"
images = ["busybox:*"]

[[limit]]
name = "no-host-network"
host_network = false
"#,
    );
    let c = unix(1000);
    let rows: &[(&str, Option<&str>)] = &[
        ("/images/create?fromImage=busybox&tag=1.36", None),
        ("/images/create?fromImage=busybox", None),
        ("/images/create?fromImage=alpine&tag=latest", Some("images")),
        (
            "/images/create?fromImage=busybox&tag=1;fromImage=alpine",
            Some("images"),
        ),
        (
            "/images/create?fromImage=docker.io%2Flibrary%2Falpine&tag=3",
            Some("images"),
        ),
        ("/images/create?fromSrc=-&repo=mine", None),
        ("/build?t=x&networkmode=host", Some("no-host-network")),
        ("/build?t=x&networkmode=HOST", Some("no-host-network")),
        ("/build?t=x&networkmode=bridge", None),
    ];
    for (path, want) in rows {
        let d = decide(&p, &c, "POST", path, "");
        assert_eq!(rule_of(&d), *want, "{path} → {d:?}");
    }
    // dockerd reads form fields from urlencoded bodies over the query string.
    let req = RequestFacts::new("POST", "/images/create", &c)
        .with_query("fromImage=busybox&tag=1")
        .with_content_type("application/x-www-form-urlencoded; charset=utf-8");
    assert_eq!(rule_of(&p.check_request(&req)), Some("images"));
}

#[test]
fn allow_all_passes_everything_without_reading_bodies() {
    let p = AccessPolicy::allow_all();
    let c = ClientIdentity::Anonymous;
    for (method, path) in [
        ("POST", "/containers/create"),
        ("DELETE", "/images/x"),
        ("GET", "/x"),
    ] {
        let req = RequestFacts::new(method, path, &c);
        assert_eq!(p.check_request(&req), Decision::Allow);
        assert_eq!(p.check_body(&req, b"junk"), Decision::Allow);
    }
}

#[test]
fn check_body_never_allows_what_check_request_refuses() {
    let p = policy(READONLY);
    let c = unix(1);
    let req = RequestFacts::new("POST", "/containers/create", &c);
    assert_eq!(rule_of(&p.check_body(&req, b"{}")), Some("read_only"));
}

#[test]
fn example_policies_parse() {
    let strict = AccessPolicy::from_toml(STRICT).unwrap();
    assert_eq!(strict.limits.len(), 6);
    let readonly = AccessPolicy::from_toml(READONLY).unwrap();
    assert!(readonly.read_only);
}

#[test]
fn parse_errors_name_the_line_and_the_key() {
    let rows: &[(&str, usize, &str)] = &[
        ("default = \"maybe\"", 1, "expected \"allow\" or \"deny\""),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\nsections = [\"contaners\"]", 4, "unknown section \"contaners\""),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\nmethods = [\"FETCH\"]", 4, "unknown method \"FETCH\""),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\nclients = [\"user:1\"]", 4, "unknown client \"user:1\""),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\nclients = [\"uid:me\"]", 4, "uid must be a number"),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\npaths = [\"containers/*\"]", 4, "must start with `/`"),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\npaths = [\"/v1.41/x\"]", 4, "without its /vX.Y prefix"),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\nsections = []", 4, "matches nothing"),
        ("[[rule]]\nname = \"x\"\naction = \"permit\"", 3, "action = \"permit\""),
        ("[[rule]]\nname = \"x\"\naction = \"allow\"\n\n[[rule]]\nname = \"x\"\naction = \"deny\"", 6, "duplicate name \"x\""),
        ("[[limit]]\nname = \"l\"\nprivilegd = false", 3, "unknown field `privilegd`"),
        ("[[limit]]\nname = \"l\"\nprivileged = \"no\"", 3, "invalid type"),
        ("[[limit]]\nname = \"l\"\nbind_roots = [\"srv\"]", 3, "not an absolute path"),
        ("[[limit]]\nname = \"l\"", 2, "constrains nothing"),
        ("[[limit]]\nname = \"default\"\nprivileged = false", 2, "reserved"),
        ("max_body_bytes = 0", 1, "max_body_bytes must be between"),
        ("read_only = true\nread_only = false", 2, "duplicate key"),
        ("[[rule]]\naction = \"allow\"", 1, "missing field `name`"),
        ("default = ", 1, "value is missing"),
        ("[[rule]\nname = 1", 1, "invalid table header; expected"),
    ];
    for (text, line, needle) in rows {
        let err = AccessPolicy::from_toml(text).expect_err(text);
        let PolicyError::Invalid { line: got, .. } = &err else {
            panic!("{err}")
        };
        let shown = err.to_string();
        assert_eq!(*got, Some(*line), "{text:?}: {shown}");
        assert!(shown.contains(needle), "{text:?}: {shown}");
        assert!(!shown.contains('\n'), "one line: {shown}");
    }
}

#[test]
fn recorded_policy_allows_exactly_the_recorded_requests() {
    let rec = PolicyRecorder::new();
    let dev = unix(1000);
    let ci = ClientIdentity::Tls {
        subject: Some("CN=ci*, O=acme".into()),
    };
    let create = r#"{"Image":"busybox","User":"app","HostConfig":{"Binds":["/srv/data/../w:/w"],"CapAdd":["net_admin"]}}"#;
    let requests: &[(&ClientIdentity, &str, &str, &str)] = &[
        (&dev, "HEAD", "/_ping", ""),
        (&dev, "GET", "/v1.41/containers/json", ""),
        (&dev, "POST", "/v1.41/containers/create", create),
        (&dev, "POST", "/v1.41/containers/abc/start", ""),
        (
            &dev,
            "POST",
            "/images/create?fromImage=busybox&tag=latest",
            "",
        ),
        (&ci, "GET", "/images/json", ""),
    ];
    for (client, method, path, body) in requests {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut req = RequestFacts::new(method, path, client);
        if !query.is_empty() {
            req = req.with_query(query);
        }
        let body = rec.wants_body(&req).map(|_| body.as_bytes());
        rec.record(&req, body);
    }
    let text = rec.to_toml();
    let p = policy(&text);
    for (client, method, path, body) in requests {
        let d = decide(&p, client, method, path, body);
        assert!(d.is_allow(), "{method} {path} → {d:?}\n{text}");
    }
    let refused: &[(&ClientIdentity, &str, &str, &str)] = &[
        (&dev, "DELETE", "/containers/abc", ""),
        (&dev, "GET", "/images/json", ""),
        (&ci, "GET", "/containers/json", ""),
        (&unix(1001), "HEAD", "/_ping", ""),
        (
            &dev,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","User":"app","HostConfig":{"Privileged":true}}"#,
        ),
        (
            &dev,
            "POST",
            "/containers/create",
            r#"{"Image":"alpine","User":"app"}"#,
        ),
        (
            &dev,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","User":"root"}"#,
        ),
        (
            &dev,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","User":"app","HostConfig":{"Binds":["/srv/data:/d"]}}"#,
        ),
        (
            &dev,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","User":"app","HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#,
        ),
        (&dev, "POST", "/images/create?fromImage=busybox", ""),
    ];
    for (client, method, path, body) in refused {
        let d = decide(&p, client, method, path, body);
        assert!(
            d.is_deny(),
            "{client} {method} {path} {body} → {d:?}\n{text}"
        );
    }
}

#[test]
fn fifty_rule_policies_decide_without_reading_bodies_they_do_not_need() {
    let mut text = String::from("default = \"deny\"\n");
    for i in 0..48 {
        text.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\naction = \"deny\"\nclients = [\"uid:{}\"]\npaths = [\"/containers/*/x{i}\"]\n",
            5000 + i
        ));
    }
    text.push_str("[[rule]]\nname = \"all\"\naction = \"allow\"\n");
    text.push_str("[[limit]]\nname = \"np\"\nprivileged = false\n");
    let p = policy(&text);
    let c = unix(1000);
    let req = RequestFacts::new("POST", "/v1.41/containers/create", &c);
    assert_eq!(
        p.check_request(&req),
        Decision::NeedsBody { limit: 1 << 20 }
    );
    let list = RequestFacts::new("GET", "/v1.41/containers/json", &c);
    assert_eq!(p.check_request(&list), Decision::Allow);
}

#[test]
fn tenant_selectors_pick_the_clients_of_a_gateway_tenant() {
    let p = policy(
        r#"
default = "allow"

[[rule]]
name = "ci-reads-only"
action = "deny"
clients = ["tenant:ci"]
methods = ["POST", "DELETE"]
sections = ["volumes"]

[[limit]]
name = "ci-small-images"
clients = ["tenant:ci"]
except = ["uid:0"]
images = ["busybox*"]
"#,
    );
    let client = unix(1000);
    let ask = |tenant: Option<&str>, method, path, body: &str| {
        let mut req = RequestFacts::new(method, path, &client);
        if let Some(t) = tenant {
            req = req.with_tenant(t);
        }
        match p.check_request(&req) {
            Decision::NeedsBody { .. } => p.check_body(&req, body.as_bytes()),
            d => d,
        }
    };
    let create = r#"{"Image":"alpine"}"#;
    let rows: &[(Option<&str>, &str, &str, Option<&str>)] = &[
        (Some("ci"), "POST", "/volumes/create", Some("ci-reads-only")),
        (Some("ci"), "GET", "/volumes", None),
        (Some("cd"), "POST", "/volumes/create", None),
        (None, "POST", "/volumes/create", None),
        (
            Some("ci"),
            "POST",
            "/containers/create",
            Some("ci-small-images"),
        ),
        (Some("cix"), "POST", "/containers/create", None),
        (None, "POST", "/containers/create", None),
    ];
    for (tenant, method, path, want) in rows {
        let d = ask(*tenant, method, path, create);
        assert_eq!(rule_of(&d), *want, "{tenant:?} {method} {path} → {d:?}");
    }
    let bad = AccessPolicy::from_toml(
        "[[rule]]\nname = \"x\"\naction = \"deny\"\nclients = [\"tenant:\"]\n",
    );
    assert!(bad.unwrap_err().to_string().contains("empty tenant name"));
}
