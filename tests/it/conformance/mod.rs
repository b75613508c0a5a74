//! The backend conformance suite: one set of scenarios that every backend runs, against
//! the real server side of each (loopback only, no root).
//!
//! What the [`Backend`] trait promises and each scenario checks: delivery by key to every
//! subscriber, group delivery (a batch to several keys, and one envelope to a group key
//! that many members subscribe), reordering tolerated, envelopes for unknown recipients
//! dropped not queued, subscriptions restored after the server side restarts, and the
//! sender authenticated end to end (a backend publishes only as keys it proved, and the
//! receiver sees who sealed the envelope).

mod scenarios;

use std::sync::Arc;

use tokio::sync::mpsc;
use wice::signaling::server::{ServerConfig, TlsIdentity};
use wice::signaling::{
    Backend, BackendUrl, Delivery, GrpcBackend, GrpcOptions, InProcessHub, WsBackend, WsOptions,
};
#[cfg(feature = "kubernetes")]
use wice::signaling::{K8sBackend, K8sOptions};
#[cfg(feature = "nats")]
use wice::signaling::{NatsBackend, NatsOptions};
use wice_core::keys::PrivateKey;

use crate::k8s_cluster::{K8sCluster, k8s_tools_or_skip};
use crate::nats_cluster::{NatsCluster, nats_server_or_skip};

use crate::signaling::{Peer, RunningServer, loopback_config, publisher_on, quick_reconnect};

/// The backends the conformance suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    InProcess,
    Grpc,
    Grpcs,
    /// `wice signal --ws-listen`, plain and TLS.
    Ws,
    Wss,
    /// One `nats-server` (the cluster tests are in `nats`); cargo feature `nats`.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Nats,
    /// A kube-apiserver with etcd (`k8s_cluster`); cargo feature `kubernetes`.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    Kubernetes,
    /// A libp2p network on loopback: a bootstrap node and one node per client (`p2p`);
    /// cargo feature `libp2p`.
    #[cfg_attr(not(feature = "libp2p"), allow(dead_code))]
    Libp2p,
}

/// False (and the test says it skips) when `kind`'s server cannot be run here.
pub(crate) fn available(kind: Kind, test: &str) -> bool {
    match kind {
        Kind::Nats => nats_server_or_skip(test),
        Kind::Kubernetes => k8s_tools_or_skip(test).is_some(),
        _ => true,
    }
}

/// Kubernetes client settings for tests: quick retries.
#[cfg(feature = "kubernetes")]
pub(crate) fn quick_k8s() -> K8sOptions {
    K8sOptions {
        backoff_initial: std::time::Duration::from_millis(50),
        backoff_max: std::time::Duration::from_millis(400),
        ..K8sOptions::default()
    }
}

/// NATS client settings for tests: quick reconnects.
#[cfg(feature = "nats")]
pub(crate) fn quick_nats() -> NatsOptions {
    NatsOptions {
        max_reconnect_delay: std::time::Duration::from_millis(400),
        ..NatsOptions::default()
    }
}

/// WebSocket client settings for tests: quick reconnects.
pub(crate) fn quick_ws(ca_certificate_pem: Option<Vec<u8>>) -> WsOptions {
    WsOptions {
        ca_certificate_pem,
        backoff_initial: std::time::Duration::from_millis(50),
        backoff_max: std::time::Duration::from_millis(400),
        ..WsOptions::default()
    }
}

/// One backend deployment shared by the peers of a test.
pub(crate) struct World {
    kind: Kind,
    hub: InProcessHub,
    server: Option<RunningServer>,
    nats: Option<NatsCluster>,
    k8s: Option<K8sCluster>,
    #[cfg(feature = "libp2p")]
    libp2p: Option<crate::p2p::Libp2pNet>,
    tls: Option<TlsIdentity>,
    url: Option<BackendUrl>,
}

impl World {
    pub(crate) async fn new(kind: Kind) -> Self {
        let tls = matches!(kind, Kind::Grpcs | Kind::Wss).then(test_certificate);
        let ws = matches!(kind, Kind::Ws | Kind::Wss);
        let server = match kind {
            Kind::InProcess | Kind::Nats | Kind::Kubernetes | Kind::Libp2p => None,
            Kind::Grpc | Kind::Grpcs | Kind::Ws | Kind::Wss => Some(
                RunningServer::start(ServerConfig {
                    tls: tls.clone(),
                    ws_listen: ws.then(|| "127.0.0.1:0".parse().expect("addr")),
                    ..loopback_config()
                })
                .await,
            ),
        };
        let nats = (kind == Kind::Nats).then(|| NatsCluster::start(1));
        let k8s = (kind == Kind::Kubernetes).then(|| {
            K8sCluster::start(&k8s_tools_or_skip("conformance").expect("kubernetes tools"))
        });
        let url = server
            .as_ref()
            .map(|s| match s.ws_addr {
                Some(ws_addr) => BackendUrl::WebSocket {
                    host: "127.0.0.1".to_owned(),
                    port: ws_addr.port(),
                    tls: kind == Kind::Wss,
                },
                None => BackendUrl::Grpc {
                    host: "127.0.0.1".to_owned(),
                    port: s.addr.port(),
                    tls: kind == Kind::Grpcs,
                },
            })
            .or_else(|| nats.as_ref().map(|n| n.url(0)))
            .or_else(|| k8s.as_ref().map(|k| k.url(None)));
        #[cfg(feature = "libp2p")]
        let libp2p = match kind {
            Kind::Libp2p => Some(crate::p2p::Libp2pNet::start().await),
            _ => None,
        };
        Self {
            kind,
            hub: InProcessHub::new(),
            server,
            nats,
            k8s,
            #[cfg(feature = "libp2p")]
            libp2p,
            tls,
            url,
        }
    }

    /// A new client of this deployment (its own connection, where the backend has one).
    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        #[cfg(feature = "libp2p")]
        if let Some(net) = &self.libp2p {
            return net.backend();
        }
        match &self.url {
            None => Arc::new(self.hub.backend()),
            #[cfg(feature = "nats")]
            Some(url @ BackendUrl::Nats(_)) => {
                Arc::new(NatsBackend::new(url, quick_nats()).expect("backend"))
            }
            #[cfg(feature = "kubernetes")]
            Some(url @ BackendUrl::Kubernetes(_)) => {
                Arc::new(K8sBackend::new(url, quick_k8s()).expect("backend"))
            }
            Some(url @ BackendUrl::WebSocket { .. }) => Arc::new(
                WsBackend::new(url, quick_ws(self.tls.as_ref().map(|t| t.cert_pem.clone())))
                    .expect("backend"),
            ),
            Some(url) => Arc::new(
                GrpcBackend::new(
                    url,
                    GrpcOptions {
                        ca_certificate_pem: self.tls.as_ref().map(|t| t.cert_pem.clone()),
                        ..quick_reconnect()
                    },
                )
                .expect("backend"),
            ),
        }
    }

    pub(crate) async fn peer(&self) -> Peer {
        Peer::start(PrivateKey::generate(), vec![self.backend()]).await
    }

    pub(crate) async fn peers(&self, n: usize) -> Vec<Peer> {
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            peers.push(self.peer().await);
        }
        peers
    }

    /// A backend that may publish as `key`: it subscribed the key (the key proof), into an
    /// inbox the caller keeps open.
    pub(crate) async fn publisher(
        &self,
        key: &PrivateKey,
    ) -> (Arc<dyn Backend>, mpsc::Receiver<Delivery>) {
        publisher_on(self.backend(), key).await
    }

    /// Waits until the server side has dropped an envelope for want of a subscriber.
    pub(crate) async fn wait_until_dropped(&self) {
        #[cfg(feature = "libp2p")]
        if let Some(net) = &self.libp2p {
            // The publish returned once the lookup started; it drops when no peer
            // provides the recipient's mailbox.
            return net.wait_until_dropped().await;
        }
        let dropped = || match &self.server {
            Some(server) => server.counters.snapshot().dropped_no_subscriber,
            None => self.hub.counters().dropped_no_subscriber,
        };
        if self.nats.is_some() || self.k8s.is_some() {
            // NATS counts no such drop; the publish was flushed, so the server has already
            // handled it (and had no interest to send it to). Kubernetes keeps the object,
            // stored before the publish returned: a later subscription starts after it.
            return;
        }
        let deadline = std::time::Instant::now() + crate::signaling::WAIT;
        while dropped() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the envelope was never dropped"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops the server side and starts it again at the same address, as an operator's
    /// restart does: every subscription it held is gone until the clients redo it.
    pub(crate) async fn restart_server_side(&mut self) {
        assert!(
            self.kind != Kind::InProcess,
            "an in-process hub has no server side to restart"
        );
        if let Some(nats) = &mut self.nats {
            nats.kill(0);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            nats.restart(0);
            return;
        }
        if let Some(k8s) = &mut self.k8s {
            k8s.restart_apiserver(std::time::Duration::from_millis(300));
            return;
        }
        #[cfg(feature = "libp2p")]
        if let Some(net) = &mut self.libp2p {
            net.restart_bootstrap(std::time::Duration::from_millis(300))
                .await;
            return;
        }
        let server = self.server.take().expect("a server");
        let addr = server.addr;
        let ws_addr = server.ws_addr;
        server.stop().await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.server = Some(
            RunningServer::start(ServerConfig {
                listen: addr,
                ws_listen: ws_addr,
                tls: self.tls.clone(),
                ..loopback_config()
            })
            .await,
        );
    }
}

/// A self-signed certificate for 127.0.0.1, made here: nothing is fetched.
pub(crate) fn test_certificate() -> TlsIdentity {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    TlsIdentity {
        cert_pem: certified.cert.pem().into_bytes(),
        key_pem: certified.signing_key.serialize_pem().into_bytes(),
    }
}

/// One `#[tokio::test]` per scenario in `$module`, running it against `$kind`.
macro_rules! conformance {
    ($module:ident, $kind:expr, [$($scenario:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if super::available($kind, stringify!($scenario)) {
                        super::scenarios::$scenario($kind).await;
                    }
                }
            )*
        }
    };
}

/// What every backend with a server side runs; the in-process hub runs all but the restart.
macro_rules! every_scenario {
    ($module:ident, $kind:expr) => {
        conformance!(
            $module,
            $kind,
            [
                all_to_all_delivery_reaches_every_peer_with_the_right_sender,
                a_multicast_reaches_exactly_its_group,
                a_group_key_reaches_every_member_however_many,
                reordered_envelopes_are_all_accepted,
                envelopes_for_unknown_recipients_are_dropped_not_queued,
                a_backend_publishes_only_as_keys_it_proved,
                every_subscription_is_restored_after_the_server_side_restarts,
            ]
        );
    };
}

conformance!(
    over_inprocess,
    super::Kind::InProcess,
    [
        all_to_all_delivery_reaches_every_peer_with_the_right_sender,
        a_multicast_reaches_exactly_its_group,
        a_group_key_reaches_every_member_however_many,
        reordered_envelopes_are_all_accepted,
        envelopes_for_unknown_recipients_are_dropped_not_queued,
        a_backend_publishes_only_as_keys_it_proved,
    ]
);
every_scenario!(over_grpc, super::Kind::Grpc);
every_scenario!(over_grpcs, super::Kind::Grpcs);
every_scenario!(over_ws, super::Kind::Ws);
every_scenario!(over_wss, super::Kind::Wss);
#[cfg(feature = "nats")]
every_scenario!(over_nats, super::Kind::Nats);
#[cfg(feature = "kubernetes")]
every_scenario!(over_kubernetes, super::Kind::Kubernetes);
#[cfg(feature = "libp2p")]
every_scenario!(over_libp2p, super::Kind::Libp2p);
