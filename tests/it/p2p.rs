//! The libp2p backend on loopback (no root): the network the conformance suite runs on
//! (`conformance::over_libp2p`), a node rejoining after its only peer, the bootstrap,
//! restarts, and a hostile peer sending what is not an envelope.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{Multiaddr, StreamProtocol, request_response, swarm::SwarmEvent};
use wice::signaling::libp2p_client::{MAX_ENVELOPE_LEN, peer_id_of};
use wice::signaling::{
    Backend, BackendUrl, Inbox, Libp2pAddr, Libp2pBackend, Libp2pOptions, Libp2pUrl,
};
use wice_core::keys::PrivateKey;

use crate::signaling::{Peer, WAIT, description, exchange_until_all_heard};

/// Client settings for tests: quick redials.
pub(crate) fn quick_libp2p() -> Libp2pOptions {
    Libp2pOptions {
        redial_initial: Duration::from_millis(50),
        redial_max: Duration::from_millis(400),
        request_timeout: Duration::from_secs(5),
        ..Libp2pOptions::default()
    }
}

/// `/ip4/127.0.0.1/tcp/PORT`.
fn loopback(port: u16) -> Libp2pAddr {
    Libp2pAddr {
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
        port,
        peer: None,
    }
}

/// A libp2p network on loopback: one bootstrap node that subscribes nothing (the "server
/// side" the suite restarts), and every client made with [`Libp2pNet::backend`], which
/// knows only the bootstrap.
pub(crate) struct Libp2pNet {
    bootstrap_key: PrivateKey,
    bootstrap_port: u16,
    bootstrap: Option<Arc<Libp2pBackend>>,
    clients: Mutex<Vec<Arc<Libp2pBackend>>>,
}

impl Libp2pNet {
    pub(crate) async fn start() -> Self {
        let bootstrap_key = PrivateKey::generate();
        let bootstrap = start_bootstrap(&bootstrap_key, 0).await;
        let bootstrap_port = port_of(&bootstrap).await;
        Self {
            bootstrap_key,
            bootstrap_port,
            bootstrap: Some(bootstrap),
            clients: Mutex::new(Vec::new()),
        }
    }

    /// The URL clients use: the bootstrap with its peer id, listening on loopback.
    pub(crate) fn client_url(&self) -> BackendUrl {
        BackendUrl::Libp2p(Libp2pUrl {
            bootstraps: vec![Libp2pAddr {
                peer: Some(peer_id_of(&self.bootstrap_key)),
                ..loopback(self.bootstrap_port)
            }],
            listen: Some(loopback(0)),
        })
    }

    /// A new node that knows only the bootstrap.
    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        let client = Arc::new(
            Libp2pBackend::new(&self.client_url(), &PrivateKey::generate(), quick_libp2p())
                .expect("libp2p backend"),
        );
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&client));
        client
    }

    /// Waits until some client dropped an envelope no peer provides a mailbox for.
    pub(crate) async fn wait_until_dropped(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let dropped: u64 = self
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|c| c.counters().dropped_no_recipient)
                .sum();
            if dropped > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "the envelope was never dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the bootstrap node and starts it again at the same address with the same
    /// identity: it remembers no peer and no provider record.
    pub(crate) async fn restart_bootstrap(&mut self, down_for: Duration) {
        drop(self.bootstrap.take());
        tokio::time::sleep(down_for).await;
        self.bootstrap = Some(start_bootstrap(&self.bootstrap_key, self.bootstrap_port).await);
    }
}

/// A node with no bootstrap of its own, listening on `port` (0: any).
async fn start_bootstrap(key: &PrivateKey, port: u16) -> Arc<Libp2pBackend> {
    let url = BackendUrl::Libp2p(Libp2pUrl {
        bootstraps: Vec::new(),
        listen: Some(loopback(port)),
    });
    // The old listener may take a moment to go after a restart.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Libp2pBackend::new(&url, key, quick_libp2p()) {
            Ok(node) => return Arc::new(node),
            Err(error) => {
                assert!(Instant::now() < deadline, "bootstrap: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn port_of(node: &Libp2pBackend) -> u16 {
    let addrs = node.listen_addrs(Duration::from_secs(5)).await;
    addrs
        .iter()
        .find_map(|addr| {
            addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
        })
        .expect("a listen address")
}

/// A node whose only peer is the bootstrap loses it and dials it again until it is back:
/// a newcomer that joins through the restarted bootstrap (which remembers nobody) reaches
/// the node only because the node rejoined. The node itself publishes nothing (its own
/// lookups would reconnect it anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_only_peer_was_the_bootstrap_rejoins_after_the_bootstrap_restarts() {
    let mut net = Libp2pNet::start().await;
    let mut early = Peer::start(PrivateKey::generate(), vec![net.backend()]).await;

    // Down long enough for the connection to drop and a few redials to fail.
    net.restart_bootstrap(Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let late = Arc::new(Peer::start(PrivateKey::generate(), vec![net.backend()]).await);
    let publisher = tokio::spawn({
        let late = Arc::clone(&late);
        let to = early.public();
        async move {
            loop {
                let _ = late.signaling.publish(&[to], &description(1, 0)).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    // Panics ("a message in time") if the node never rejoined.
    let got = early.next(Duration::from_secs(10)).await;
    publisher.abort();
    let _ = publisher.await;
    assert_eq!(got.sender, late.public());
    // And back: the node finds the newcomer.
    let Ok(late) = Arc::try_unwrap(late) else {
        panic!("the publisher task is gone");
    };
    let keys = [early.public(), late.public()];
    exchange_until_all_heard(&mut [early, late], &keys, 2).await;
}

/// A request-response codec that sends raw bytes: a peer that does not follow the
/// envelope protocol.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(16).read_to_end(&mut bytes).await?;
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        (): (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// A stranger dials a node and sends garbage and an oversized message on the envelope
/// protocol: each is counted and dropped, nothing reaches the inbox, and the node still
/// delivers a real envelope afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_stranger_sends_that_is_no_envelope_is_counted_and_dropped() {
    let node_key = PrivateKey::generate();
    let url = BackendUrl::Libp2p(Libp2pUrl {
        bootstraps: Vec::new(),
        listen: Some(loopback(0)),
    });
    let node = Arc::new(Libp2pBackend::new(&url, &node_key, quick_libp2p()).expect("node"));
    let (inbox, mut received) = Inbox::channel(8);
    node.subscribe(node_key.clone(), inbox)
        .await
        .expect("subscribe");
    let port = port_of(&node).await;
    let target: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", peer_id_of(&node_key))
        .parse()
        .expect("multiaddr");
    let node_peer = target
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .expect("peer id");

    let mut stranger = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|_| {
            request_response::Behaviour::<RawCodec>::new(
                [(
                    StreamProtocol::new("/wice/envelope/1"),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            )
        })
        .expect("behaviour")
        .build();
    stranger.dial(target).expect("dial");
    tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = stranger.select_next_some().await {
                return;
            }
        }
    })
    .await
    .expect("the stranger connects");
    let garbage = [
        b"not an envelope".to_vec(),
        vec![0xff; 64],
        vec![0; MAX_ENVELOPE_LEN + 1000],
    ];
    for message in &garbage {
        stranger
            .behaviour_mut()
            .send_request(&node_peer, message.clone());
    }
    let deadline = Instant::now() + WAIT;
    while node.counters().malformed < garbage.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "not every bad message was counted: {:?}",
            node.counters()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            let _ = stranger.select_next_some().await;
        })
        .await;
    }
    assert!(received.try_recv().is_err(), "nothing reached the inbox");

    // The node still works: a real envelope from a peer on the same network arrives.
    let sender_key = PrivateKey::generate();
    let sender_url = BackendUrl::Libp2p(Libp2pUrl {
        bootstraps: vec![Libp2pAddr {
            peer: Some(peer_id_of(&node_key)),
            ..loopback(port)
        }],
        listen: Some(loopback(0)),
    });
    let sender: Arc<dyn Backend> =
        Arc::new(Libp2pBackend::new(&sender_url, &sender_key, quick_libp2p()).expect("sender"));
    let sender = Peer::start(sender_key, vec![sender]).await;
    sender
        .publish(&[node_key.public_key()], &description(5, 0))
        .await;
    let got = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("a real envelope in time")
        .expect("inbox open");
    assert_eq!(got.envelope.sender, sender.public());
}
