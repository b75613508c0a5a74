//! What the libp2p backend puts on the wire and reads from it: its protocol names, the
//! envelope codec (one envelope per stream, read no further than one byte past
//! [`MAX_ENVELOPE_LEN`]), and the
//! TCP multiaddrs it dials and accepts from peers.

use std::io;
use std::net::IpAddr;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol, request_response};
use wice_core::signaling::envelope::MAX_ENVELOPE_LEN;

use super::backend::BackendError;
use super::libp2p_url::Libp2pAddr;

/// Our own Kademlia protocol: wice nodes form their own DHT, apart from IPFS's.
pub(super) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/wice/kad/1.0.0");
/// Envelopes, one per stream, answered with an empty acknowledgement.
pub(super) const ENVELOPE_PROTOCOL: StreamProtocol = StreamProtocol::new("/wice/envelope/1");
/// Reads and writes envelopes on a stream: the request is the encoded envelope, cut off
/// past [`MAX_ENVELOPE_LEN`]; the response is empty.
#[derive(Debug, Clone, Default)]
pub(super) struct EnvelopeCodec;

impl request_response::Codec for EnvelopeCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        // One byte past the limit is enough to know it is over (the node counts that as
        // malformed: an error here would reach nobody, libp2p only logs it).
        let mut bytes = Vec::new();
        io.take(MAX_ENVELOPE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut rest = Vec::new();
        io.take(16).read_to_end(&mut rest).await?;
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&request).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// A setup error naming what failed.
pub(super) fn setup(what: &str, error: &dyn std::fmt::Display) -> BackendError {
    BackendError::Setup(format!("libp2p {what}: {error}"))
}

/// `addr` as a multiaddr, with `/p2p/…` when it names a peer.
pub(super) fn to_multiaddr(addr: &Libp2pAddr) -> Result<(Multiaddr, Option<PeerId>), BackendError> {
    let ip = match addr.ip {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    let tcp = Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port));
    let peer = match &addr.peer {
        Some(text) => Some(
            text.parse::<PeerId>()
                .map_err(|e| setup(&format!("peer id in {addr}"), &e))?,
        ),
        None => None,
    };
    Ok((tcp, peer))
}

/// The IP and TCP parts of `addr` if it is `/ip4|ip6/…/tcp/…[/p2p/…]`, without `/p2p/`.
pub(super) fn tcp_part(addr: &Multiaddr) -> Option<(IpAddr, Multiaddr)> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => {}
        Some(_) => return None,
    }
    let tcp = Multiaddr::empty()
        .with(match ip {
            IpAddr::V4(v4) => Protocol::Ip4(v4),
            IpAddr::V6(v6) => Protocol::Ip6(v6),
        })
        .with(Protocol::Tcp(port));
    Some((ip, tcp))
}
