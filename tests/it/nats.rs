//! Signaling over a three-server NATS cluster (`nats-server` on 127.0.0.1, routed): nodes
//! attached to different servers, directly and through `wice signal --nats` front-ends;
//! a server killed mid-test; a mesh whose nodes use different backends. No root.

use std::sync::Arc;

use wice::signaling::server::ServerConfig;
use wice::signaling::{Backend, BackendUrl, GrpcBackend, NatsBackend, NatsUrl};
use wice_core::keys::{PrivateKey, PublicKey};

use crate::conformance::quick_nats;
use crate::nats_cluster::{NatsCluster, nats_server_or_skip};
use crate::signaling::{
    Peer, RunningServer, exchange_until_all_heard, loopback_config, loopback_url, quick_reconnect,
};

fn nats(url: BackendUrl) -> Arc<dyn Backend> {
    Arc::new(NatsBackend::new(&url, quick_nats()).expect("NATS backend"))
}

fn grpc_to(server: &RunningServer) -> Arc<dyn Backend> {
    let url = loopback_url(server.addr.port(), false);
    Arc::new(GrpcBackend::new(&url, quick_reconnect()).expect("gRPC backend"))
}

fn nats_url(url: BackendUrl) -> NatsUrl {
    match url {
        BackendUrl::Nats(url) => url,
        other => panic!("{other} is not a NATS URL"),
    }
}

/// A `wice signal` whose bus is the cluster, through `url`.
async fn front_end(url: BackendUrl) -> RunningServer {
    RunningServer::start(ServerConfig {
        nats_bus: Some(nats_url(url)),
        ..loopback_config()
    })
    .await
}

fn keys_of(peers: &[Peer]) -> Vec<PublicKey> {
    peers.iter().map(Peer::public).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_different_nats_servers_and_signal_front_ends_reach_each_other() {
    if !nats_server_or_skip(
        "nodes_on_different_nats_servers_and_signal_front_ends_reach_each_other",
    ) {
        return;
    }
    let cluster = NatsCluster::start(3);
    let front_1 = front_end(cluster.url(1)).await;
    let front_2 = front_end(cluster.url(2)).await;
    let mut peers = vec![
        // Directly on two different NATS servers.
        Peer::start(PrivateKey::generate(), vec![nats(cluster.url(0))]).await,
        Peer::start(PrivateKey::generate(), vec![nats(cluster.url(1))]).await,
        // Through two front-ends on two more servers, two nodes on one of them.
        Peer::start(PrivateKey::generate(), vec![grpc_to(&front_1)]).await,
        Peer::start(PrivateKey::generate(), vec![grpc_to(&front_1)]).await,
        Peer::start(PrivateKey::generate(), vec![grpc_to(&front_2)]).await,
    ];
    let keys = keys_of(&peers);
    exchange_until_all_heard(&mut peers, &keys, 0).await;
    let (one, two) = (front_1.counters.snapshot(), front_2.counters.snapshot());
    assert!(one.bus_published > 0 && one.bus_received > 0, "{one}");
    assert!(two.bus_published > 0 && two.bus_received > 0, "{two}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_mid_test_clients_fail_over_and_a_restarted_peer_reconnects() {
    if !nats_server_or_skip(
        "a_nats_server_killed_mid_test_clients_fail_over_and_a_restarted_peer_reconnects",
    ) {
        return;
    }
    let mut cluster = NatsCluster::start(3);
    // Server 0 is the first choice of a direct node and of a front-end's bus.
    let front_0 = front_end(cluster.url_of(&[0, 1, 2])).await;
    let front_2 = front_end(cluster.url(2)).await;
    let restarted_key = PrivateKey::generate();
    let mut peers = vec![
        Peer::start(
            PrivateKey::generate(),
            vec![nats(cluster.url_of(&[0, 1, 2]))],
        )
        .await,
        Peer::start(restarted_key.clone(), vec![nats(cluster.url_of(&[1, 0]))]).await,
        Peer::start(PrivateKey::generate(), vec![grpc_to(&front_0)]).await,
        Peer::start(PrivateKey::generate(), vec![grpc_to(&front_2)]).await,
    ];
    let keys = keys_of(&peers);
    exchange_until_all_heard(&mut peers, &keys, 0).await;

    // Server 0 dies without a word: its clients (a node, a front-end's bus) move on.
    cluster.kill(0);
    exchange_until_all_heard(&mut peers, &keys, 1).await;

    // A node restarts (same key, new process state) while server 0 is still down, and
    // finds the others again.
    drop(peers.remove(1));
    peers.insert(
        1,
        Peer::start(restarted_key, vec![nats(cluster.url_of(&[0, 1, 2]))]).await,
    );
    exchange_until_all_heard(&mut peers, &keys, 2).await;
}

/// One node on NATS and gRPC, one on gRPC only, one on NATS only: every pair hears each
/// other, the gRPC-only and NATS-only ones through a front-end that shares the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_of_nodes_on_different_backends_connects_every_pair() {
    if !nats_server_or_skip("a_mesh_of_nodes_on_different_backends_connects_every_pair") {
        return;
    }
    let cluster = NatsCluster::start(3);
    let front = front_end(cluster.url(1)).await;
    let mut peers = vec![
        Peer::start(
            PrivateKey::generate(),
            vec![nats(cluster.url(0)), grpc_to(&front)],
        )
        .await,
        Peer::start(PrivateKey::generate(), vec![grpc_to(&front)]).await,
        Peer::start(PrivateKey::generate(), vec![nats(cluster.url(2))]).await,
    ];
    let keys = keys_of(&peers);
    exchange_until_all_heard(&mut peers, &keys, 0).await;
}
