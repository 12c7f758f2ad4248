use super::*;

fn request(raw: &str) -> Result<Head, FramingError> {
    let mut head = Head::default();
    assert!(
        parse_request(raw.as_bytes(), &mut head)?,
        "partial: {raw:?}"
    );
    Ok(head)
}

fn response(raw: &str, head_request: bool) -> Result<Head, FramingError> {
    let mut head = Head::default();
    assert!(
        parse_response(raw.as_bytes(), head_request, &mut head)?,
        "partial: {raw:?}"
    );
    Ok(head)
}

/// The chunked body at the start of `raw`: its decoded data and its length in `raw`.
fn chunked(raw: &[u8]) -> Result<(Vec<u8>, usize, bool), FramingError> {
    let mut scanner = ChunkedScanner::default();
    let mut data = Vec::new();
    // Byte by byte: the scanner's state must carry across any split.
    let mut used = 0;
    for b in raw {
        let (n, done) = scanner.scan(std::slice::from_ref(b), |d| data.extend_from_slice(d))?;
        used += n;
        if done {
            return Ok((data, used, true));
        }
    }
    Ok((data, used, false))
}

#[test]
fn a_request_head_is_located_line_by_line_with_its_framing() {
    let raw = "POST /v1.41/containers/create?name=a HTTP/1.1\r\nHost: docker\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n{\"Image\":1}\nNEXT";
    let head = request(raw).unwrap();
    assert_eq!(&raw[head.method.clone()], "POST");
    assert_eq!(&raw[head.target.clone()], "/v1.41/containers/create?name=a");
    assert_eq!(
        &raw[..head.first_line],
        "POST /v1.41/containers/create?name=a HTTP/1.1\r\n"
    );
    assert_eq!(head.len, raw.find("{").unwrap());
    assert_eq!(head.body, BodyLength::Length(12));
    assert!(head.http11 && !head.close && !head.upgrade && !head.expect_continue);
    let lines: Vec<_> = head.headers.iter().map(|h| &raw[h.line.clone()]).collect();
    assert_eq!(
        lines,
        [
            "Host: docker\r\n",
            "Content-Length: 12\r\n",
            "Connection: keep-alive\r\n"
        ]
    );
    assert_eq!(&raw[head.headers[1].value.clone()], "12");
}

#[test]
fn partial_heads_wait_for_more() {
    let mut head = Head::default();
    assert_eq!(
        parse_request(b"GET /_ping HTTP/1.1\r\nHost: x\r\n", &mut head),
        Ok(false)
    );
    assert_eq!(parse_request(b"", &mut head), Ok(false));
    assert_eq!(
        parse_response(b"HTTP/1.1 200 OK\r\n", false, &mut head),
        Ok(false)
    );
}

#[test]
fn what_go_or_hyper_refuses_is_refused() {
    let refused = [
        // Both lengths: a smuggling classic.
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::LengthAndChunked,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            FramingError::LengthAndChunked,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            FramingError::InvalidLength,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            FramingError::InvalidLength,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            FramingError::InvalidLength,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            FramingError::InvalidLength,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            FramingError::UnsupportedTransferEncoding,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::UnsupportedTransferEncoding,
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::UnsupportedTransferEncoding,
        ),
    ];
    for (raw, want) in refused {
        assert_eq!(request(raw).unwrap_err(), want, "{raw:?}");
    }
    // httparse's refusals: obs-fold, bare CR, a space before the colon.
    for raw in [
        "GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: 1\rX-B: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length : 0\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
    ] {
        assert!(
            matches!(request(raw), Err(FramingError::Malformed(_))),
            "{raw:?}: {:?}",
            request(raw)
        );
    }
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
    );
    assert_eq!(request(&many).unwrap_err(), FramingError::TooManyHeaders);
}

#[test]
fn equal_repeated_lengths_and_chunked_in_any_case_are_read() {
    let head = request("PUT / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").unwrap();
    assert_eq!(head.body, BodyLength::Length(5));
    let head = request("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
    assert_eq!(head.body, BodyLength::Chunked);
    let head = request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(head.body, BodyLength::Empty);
}

#[test]
fn connection_upgrade_and_expect_are_noted() {
    let head =
        request("GET / HTTP/1.1\r\nConnection: Upgrade, close\r\nUpgrade: tcp\r\n\r\n").unwrap();
    assert!(head.close && head.upgrade);
    let head = request("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(head.close && !head.http11);
    let head = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert!(!head.close);
    let head =
        request("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").unwrap();
    assert!(head.expect_continue);
    assert!(request("CONNECT a:1 HTTP/1.1\r\n\r\n").unwrap().upgrade);
}

#[test]
fn a_response_body_is_framed_by_status_method_and_headers() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            false,
            BodyLength::Length(2),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            true,
            BodyLength::Empty,
        ),
        ("HTTP/1.1 204 No Content\r\n\r\n", false, BodyLength::Empty),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            BodyLength::Empty,
        ),
        ("HTTP/1.1 100 Continue\r\n\r\n", false, BodyLength::Empty),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            BodyLength::Chunked,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            false,
            BodyLength::UntilClose,
        ),
    ];
    for (raw, head_request, want) in cases {
        assert_eq!(response(raw, head_request).unwrap().body, want, "{raw:?}");
    }
    let head = response(
        "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .unwrap();
    assert!(head.close);
    assert_eq!(head.status, 500);
    assert_eq!(
        response(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .unwrap_err(),
        FramingError::LengthAndChunked
    );
}

#[test]
fn a_chunked_body_ends_where_hyper_ends_it() {
    let (data, used, done) = chunked(b"5\r\nhello\r\n0;ext=1\r\n\r\nNEXT").unwrap();
    assert_eq!((data.as_slice(), used, done), (&b"hello"[..], 21, true));
    let (data, used, done) = chunked(b"A ;x\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nrest").unwrap();
    assert_eq!(
        (data.as_slice(), used, done),
        (&b"0123456789"[..], 31, true)
    );
    let (_, used, done) = chunked(b"3\r\nabc\r\n").unwrap();
    assert_eq!((used, done), (8, false));
    for bad in [
        &b"x\r\n"[..],
        b"5\nhello\r\n",
        b"3\r\nabcd\r\n",
        b"3\r\nabc\n",
        b"3 4\r\nabc\r\n",
        b"3;a\nb\r\n",
        b"11111111111111111\r\n",
        b"0\r\nX-T 1\r\n\r\n",
        b"0\r\n\rx",
    ] {
        assert!(chunked(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_relay_may_skip_chunk_data_without_scanning_it() {
    let mut scanner = ChunkedScanner::default();
    assert_eq!(scanner.scan(b"10\r\n", |_| {}), Ok((4, false)));
    assert_eq!(scanner.data_left(), 16);
    scanner.skip_data(16);
    assert_eq!(scanner.data_left(), 0);
    assert_eq!(scanner.scan(b"\r\n0\r\n\r\n", |_| {}), Ok((7, true)));
    assert!(scanner.is_done());
}
