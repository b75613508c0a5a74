//! The wire rules the control plane and the datapath share: telling the datagrams on the one
//! UDP socket apart ([`classify`]), and a peer's path with its ChannelData framing
//! ([`endpoint`]). The datapath applies them per packet; the ICE controller decides paths in
//! the same type.

pub mod classify;
pub mod endpoint;

pub use classify::{DatagramKind, classify};
pub use endpoint::Endpoint;
