//! wice's integration tests, one binary (`tests/it/main.rs`, `cargo test --test it`).
//!
//! - `cli`: the binary's user-facing behaviour without root.
//! - `mesh`: wice ↔ wice in network namespaces (root).
//! - `interop`: wice ↔ wireguard-go configured with `wg` (root).
//! - `lifecycle`: signals, crashed runs, name clashes (root).
//! - `natlab`: meshes across NAT routers, with `wice signal` and coturn (root).
//! - `attack_stun`: a STUN-lookalike flood at a running node (root).
//! - `attack_signaling`: `wice signal` against publish without proof, floods, idle sockets.
//! - `conformance`: the scenarios every signaling backend runs (loopback, no root).
//! - `nats`: signaling over a three-server `nats-server` cluster, `wice signal --nats`
//!   front-ends, a mesh across backends (loopback, no root; `nats_cluster` runs the servers).
//! - `nats_lab`: tunnels signaled through a NATS cluster outlive a killed server (root).
//! - `signaling`: the suite's fixtures, gRPC recovery, sealing, the key proof, `wice signal`
//!   under bad input (loopback only, no root).
//! - `datapath_robustness`: a full socket, a TUN device deleted under a node, a peer
//!   restarted with the same key (root).
//! - `attack_handshake`: forged and replayed handshake floods (root).
//! - `attack_candidates`: a configured peer flooding candidates through `wice signal` (root).
//! - `systemd`: the units (`systemd-analyze verify`) and the notify protocol against a fake
//!   systemd (the node part as root).
//! - `metrics`: Prometheus exposition checked by promtool and scraped by Prometheus (the
//!   node part as root).
//! - `import`: `wice import` on wg-quick files, compared with `wg-quick strip`.
//! - `routes`: a subnet router and an exit node; policy routing removed after a crash (root).
//! - `names_hooks`: peer names in a hosts file, hooks on peer events (root).
//! - `uapi`: `wg`, `wg-quick` and wireguard-go on `wice wireguard` interfaces (root).
//! - `ws`: `wice signal --ws-listen` against raw WebSocket frames and HTTP requests, the
//!   HTTP publish endpoint, a WebSocket node meeting a gRPC node (loopback, no root).
//! - `ws_lab`: nodes behind a CONNECT-only squid proxy signal over `wss://` and meet a
//!   gRPC node (root).
//! - `netcheck`: `wice netcheck` behind each lab NAT kind against an RFC 5780 coturn (root).
//! - `ping`: `wice ping` over a direct and a relayed path, `wice status --watch` frames (root).
//! - `k8s`: the Kubernetes backend against a real kube-apiserver and etcd on loopback
//!   (`k8s_cluster` runs them; built by `scripts/k8s-test-tools`): the watch resuming after an
//!   API server restart, `deploy/kubernetes/` applied, the ServiceAccount's RBAC (no root;
//!   cargo feature `kubernetes`).
//! - `p2p`: the libp2p backend's network for the conformance suite, a node rejoining a
//!   restarted bootstrap, a stranger sending what is no envelope (loopback, no root; cargo
//!   feature `libp2p`).
//! - `p2p_lab`: five `wice up` nodes with no signaling server, each bootstrapped from one
//!   other over libp2p, connect every pair (root).
//!
//! Root tests build their own namespaces with unique names, send traffic only
//! inside them, and clean up by PID and name even when they fail. Without root
//! they print why and return.

#![allow(unreachable_pub)] // a test binary has no public API; `pub` marks the harness surface

mod harness;

mod attack_candidates;
mod attack_handshake;
mod attack_signaling;
mod attack_stun;
mod cli;
mod cli_extras;
mod community;
mod community_reload;
mod community_seven;
mod conformance;
mod datapath_robustness;
mod import;
mod interop;
#[cfg(feature = "kubernetes")]
mod k8s;
mod k8s_cluster;
mod lifecycle;
mod mesh;
mod metrics;
mod names_hooks;
mod natlab;
#[cfg(feature = "nats")]
mod nats;
mod nats_cluster;
#[cfg(feature = "nats")]
mod nats_lab;
mod netcheck;
#[cfg(feature = "libp2p")]
mod p2p;
#[cfg(feature = "libp2p")]
mod p2p_lab;
mod ping;
mod reload;
mod routes;
mod signaling;
mod systemd;
mod uapi;
mod ws;
mod ws_lab;

mod attack_local;
