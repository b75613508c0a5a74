//! The file as TOML gives it, before validation.

use super::*;

/// The file as TOML gives it, before validation. Every value keeps its span so errors can
/// name the line; numbers are `i64` so out-of-range values get our message, not serde's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) interface: Option<Spanned<RawInterface>>,
    #[serde(default)]
    pub(super) peer: Vec<Spanned<RawPeer>>,
    pub(super) signaling: Option<Spanned<RawSignaling>>,
    pub(super) ice: Option<Spanned<RawIce>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawIce {
    #[serde(default)]
    pub(super) servers: Vec<Spanned<RawIceServer>>,
    pub(super) candidate_types: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawIceServer {
    #[serde(default)]
    pub(super) urls: Vec<Spanned<String>>,
    pub(super) username: Option<Spanned<String>>,
    pub(super) credential: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawSignaling {
    #[serde(default)]
    pub(super) backends: Vec<Spanned<String>>,
    pub(super) tls_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawInterface {
    pub(super) name: Option<Spanned<String>>,
    pub(super) private_key: Option<Spanned<String>>,
    pub(super) private_key_file: Option<Spanned<String>>,
    pub(super) listen_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    pub(super) mtu: Option<Spanned<i64>>,
    pub(super) control_socket: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawPeer {
    pub(super) public_key: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) allowed_ips: Vec<Spanned<String>>,
    pub(super) endpoint: Option<Spanned<String>>,
    pub(super) persistent_keepalive: Option<Spanned<i64>>,
    pub(super) preshared_key: Option<Spanned<String>>,
}
