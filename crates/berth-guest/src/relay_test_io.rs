//! Test-only client side shared by the relays' tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// 3 MiB of a pattern that shows a lost or moved byte: several pipe fills each way.
pub(crate) fn big_payload() -> Vec<u8> {
    (0..3 << 20).map(|i| (i % 251) as u8).collect()
}

/// On blocking threads: writes `sent` to `client` and half-closes it, while reading it
/// to EOF; the handle gives what was read.
pub(crate) fn send_then_half_close(
    mut client: UnixStream,
    sent: Vec<u8>,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut reader = client.try_clone().unwrap();
        let read = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        client.write_all(&sent).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        read.join().unwrap()
    })
}
