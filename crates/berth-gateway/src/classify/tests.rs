//! Declarative table of what berth must recognise, including names that look like routes.

use super::*;
use http::HeaderValue;

fn c(method: &str, path: &str, headers: &[(&str, &str)]) -> (Endpoint, Exchange, Option<String>) {
    let method: Method = method.parse().unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let got = classify(&method, path, &map);
    (
        got.endpoint,
        got.exchange,
        got.name.map(|r| path[r].to_owned()),
    )
}

#[test]
fn endpoint_table() {
    use Endpoint as E;
    use Exchange as X;
    let upgrade = [("connection", "Upgrade"), ("upgrade", "tcp")];
    let h2c = [("connection", "Upgrade"), ("upgrade", "h2c")];
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        E,
        X,
        Option<&'a str>,
    );
    let rows: &[Row<'_>] = &[
        ("GET", "/_ping", &[], E::Ping, X::Ordinary, None),
        ("HEAD", "/_ping", &[], E::Ping, X::Ordinary, None),
        ("POST", "/_ping", &[], E::Other, X::Ordinary, None),
        (
            "GET",
            "/containers/json",
            &[],
            E::ContainerList,
            X::Ordinary,
            None,
        ),
        (
            "GET",
            "/containers/json/json",
            &[],
            E::ContainerInspect,
            X::Ordinary,
            Some("json"),
        ),
        (
            "GET",
            "/containers/web/db/json",
            &[],
            E::ContainerInspect,
            X::Ordinary,
            Some("web/db"),
        ),
        (
            "POST",
            "/containers/create",
            &[],
            E::ContainerCreate,
            X::Ordinary,
            None,
        ),
        (
            "POST",
            "/volumes/create",
            &[],
            E::VolumeCreate,
            X::Ordinary,
            None,
        ),
        (
            "POST",
            "/containers/abc/start",
            &[],
            E::ContainerStart,
            X::Ordinary,
            Some("abc"),
        ),
        (
            "POST",
            "/containers/abc/wait",
            &[],
            E::ContainerWait,
            X::Ordinary,
            Some("abc"),
        ),
        (
            "DELETE",
            "/containers/abc",
            &[],
            E::ContainerDelete,
            X::Ordinary,
            Some("abc"),
        ),
        (
            "POST",
            "/containers/abc/attach",
            &upgrade,
            E::ContainerAttach,
            X::Upgrade,
            Some("abc"),
        ),
        (
            "POST",
            "/containers/abc/attach",
            &[],
            E::ContainerAttach,
            X::Hijack,
            Some("abc"),
        ),
        (
            "GET",
            "/containers/abc/attach/ws",
            &[],
            E::ContainerAttachWs,
            X::Ordinary,
            Some("abc"),
        ),
        (
            "POST",
            "/exec/e1/start",
            &upgrade,
            E::ExecStart,
            X::Upgrade,
            Some("e1"),
        ),
        (
            "POST",
            "/exec/e1/start",
            &[],
            E::ExecStart,
            X::Hijack,
            Some("e1"),
        ),
        ("POST", "/exec/e1/resize", &[], E::Other, X::Ordinary, None),
        ("POST", "/session", &h2c, E::Session, X::Upgrade, None),
        ("POST", "/grpc", &h2c, E::Grpc, X::Upgrade, None),
        (
            "POST",
            "/build",
            &[("transfer-encoding", "chunked")],
            E::Build,
            X::StreamedUpload,
            None,
        ),
        (
            "POST",
            "/images/load",
            &[("content-length", "10")],
            E::ImageLoad,
            X::StreamedUpload,
            None,
        ),
        (
            "POST",
            "/images/create",
            &[],
            E::ImageCreate,
            X::Ordinary,
            None,
        ),
        (
            "POST",
            "/images/create",
            &[("content-length", "5")],
            E::ImageCreate,
            X::StreamedUpload,
            None,
        ),
        (
            "PUT",
            "/containers/c/archive",
            &[],
            E::ContainerArchive,
            X::StreamedUpload,
            Some("c"),
        ),
        (
            "HEAD",
            "/containers/c/archive",
            &[],
            E::ContainerArchive,
            X::Ordinary,
            Some("c"),
        ),
        (
            "GET",
            "/images/localhost:5000/ns/img:tag/get",
            &[],
            E::ImageSave,
            X::Ordinary,
            Some("localhost:5000/ns/img:tag"),
        ),
        (
            "POST",
            "/containers/create",
            &[("content-length", "5000000")],
            E::ContainerCreate,
            X::StreamedUpload,
            None,
        ),
        ("GET", "/containers//json", &[], E::Other, X::Ordinary, None),
        ("GET", "/containers/", &[], E::Other, X::Ordinary, None),
        ("GET", "/", &[], E::Other, X::Ordinary, None),
        ("GET", "", &[], E::Other, X::Ordinary, None),
    ];
    for (method, path, headers, endpoint, exchange, name) in rows {
        let got = c(method, path, headers);
        assert_eq!(
            got,
            (*endpoint, *exchange, name.map(str::to_owned)),
            "{method} {path} {headers:?}"
        );
    }
}

#[test]
fn head_deadline_skips_streams_and_slow_mutations() {
    let h = HeaderMap::new();
    assert!(classify(&Method::GET, "/containers/json", &h).head_deadline_applies(&Method::GET));
    assert!(!classify(&Method::GET, "/events", &h).head_deadline_applies(&Method::GET));
    assert!(!classify(&Method::GET, "/containers/c/logs", &h).head_deadline_applies(&Method::GET));
    assert!(!classify(&Method::POST, "/containers/c/stop", &h).head_deadline_applies(&Method::POST));
}
