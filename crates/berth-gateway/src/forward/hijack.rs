//! Hijack without `Upgrade`: attach or exec start sent on a fresh connection with no
//! `Upgrade` header. dockerd answers `200 OK` and then uses the connection as a raw
//! bidirectional stream (notes 4.1). hyper cannot carry stdin after a 200, so the
//! whole client connection is spliced to a new guest connection at the socket level:
//! the bytes already read (the request head, perhaps a body) go first, then both
//! directions flow with half-close. What the client sees is exactly what dockerd wrote.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use super::splice;
use crate::guest::Guest;
use crate::serve::ClientIo;

/// Splices `client` to the guest after replaying `prelude`; `Err` hands the untouched
/// client back when the guest cannot be reached, so the caller can answer properly.
pub(crate) async fn splice_raw(
    guest: &Arc<Guest>,
    client: ClientIo,
) -> Result<io::Result<()>, ClientIo> {
    if guest.ready().await.is_err() {
        return Err(client);
    }
    let upstream = match guest.connector().connect().await {
        Ok(s) => s,
        Err(e) => {
            let _ = guest.connect_error(&e);
            return Err(client);
        }
    };
    let (stream, prelude) = client.into_parts();
    Ok(splice::bridge_client(stream, &[prelude], upstream, Bytes::new()).await)
}
