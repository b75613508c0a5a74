//! A deterministic simulator of whole wice meshes (issue 10, item 4).
//!
//! No root, no sockets, no tokio, no real clock: nodes run the product's sans-IO ICE
//! controller, offers travel sealed by the product's envelope code through an in-memory
//! backend, datagrams cross modelled NATs and links, and a TURN/STUN server runs
//! `turn-server-proto`. See [`world`] for how a run is driven and [`topology`] for the
//! address plan.

#![forbid(unsafe_code)]

pub mod clock;
pub mod nat;
pub mod node;
pub mod product;
pub mod rng;
pub mod signaling;
pub mod topology;
pub mod turn;
pub mod world;

pub use nat::{Filtering, Mapping, NatBehaviour};
pub use signaling::SignalingProfile;
pub use topology::{LinkProfile, SiteKind};
pub use world::{SimBuilder, SimConfig, Simulation};
