//! wice's integration tests, one binary (`tests/it/main.rs`, `cargo test --test it`).
//!
//! - `cli`: the binary's user-facing behaviour without root.
//! - `mesh`: wice ↔ wice in network namespaces (root).
//! - `interop`: wice ↔ wireguard-go configured with `wg` (root).
//! - `lifecycle`: signals, crashed runs, name clashes (root).
//! - `natlab`: meshes across NAT routers, with `wice signal` and coturn (root).
//! - `signaling`: the backend conformance suite, sealing, the key proof, `wice signal`
//!   under bad input (loopback only, no root).
//!
//! Root tests build their own namespaces with unique names, send traffic only
//! inside them, and clean up by PID and name even when they fail. Without root
//! they print why and return.

#![allow(unreachable_pub)] // a test binary has no public API; `pub` marks the harness surface

mod harness;

mod cli;
mod interop;
mod lifecycle;
mod mesh;
mod natlab;
mod signaling;

mod attack_local;
