//! The messages peers exchange, as Rust types, and their protobuf codec.
//!
//! The wire form is `wice_proto::signaling::SignalingMessage`. Decoding parses it into these
//! types and refuses what the ICE layer could not use (an unknown candidate type, an address
//! that is neither 4 nor 16 bytes, a port above 65535) or should not have to hold (more than
//! [`MAX_CANDIDATES`] candidates, over-long strings). Messages arrive only from senders
//! whose envelope already authenticated, so these errors mean a buggy or newer peer, not an
//! attacker; they are counted all the same.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wice_proto::signaling as proto;

/// Most candidates one session description may carry: enough for every interface of a busy
/// host plus reflexive and relayed ones, few enough to keep the ICE pair matrix small.
pub const MAX_CANDIDATES: usize = 64;
/// Longest ICE username fragment or password accepted (RFC 8839 allows up to 256 chars).
pub(crate) const MAX_CREDENTIAL_LEN: usize = 256;
/// Longest candidate foundation accepted (RFC 8839: 1 to 32 ice-chars).
pub(crate) const MAX_FOUNDATION_LEN: usize = 32;

/// One signaling message, opened and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalingMessage {
    /// A peer's ICE session: credentials and candidates.
    SessionDescription(SessionDescription),
    /// A community member's signed announcement (sealed to the community key).
    Announcement(crate::community::Announcement),
}

/// A peer's ICE session, as the offer protocol in `shared/reference` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// Random per ICE session; a different id with version 0 means the peer restarted.
    pub session_id: u64,
    /// Grows with every description sent within one session.
    pub version: u64,
    /// ICE username fragment.
    pub ice_ufrag: String,
    /// ICE password.
    pub ice_pwd: String,
    /// The candidates gathered so far, all of them (not only the new ones).
    pub candidates: Vec<Candidate>,
    /// The sender has gathered all its candidates.
    pub end_of_candidates: bool,
}

/// One ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// How the address was found.
    pub kind: CandidateKind,
    /// UDP or TCP.
    pub transport: Transport,
    /// Where to send connectivity checks.
    pub address: SocketAddr,
    /// ICE priority (RFC 8445 §5.1.2).
    pub priority: u32,
    /// ICE foundation: candidates that share it share a base and a server.
    pub foundation: String,
    /// For reflexive and relayed candidates, the base address they came from.
    pub related: Option<SocketAddr>,
}

/// How a candidate's address was found (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address of one of the host's interfaces.
    Host,
    /// The host's address as a STUN server saw it.
    ServerReflexive,
    /// The peer's address as a connectivity check saw it.
    PeerReflexive,
    /// An address allocated on a TURN server.
    Relayed,
}

/// A candidate's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (RFC 6544).
    Tcp,
}

/// Why a decoded message cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The message kind is empty or one this version does not know (a newer peer).
    #[error("message kind unknown to this version")]
    UnknownKind,
    /// A candidate type outside the enum, or `UNSPECIFIED`.
    #[error("candidate type {0} unknown")]
    UnknownCandidateType(i32),
    /// A transport outside the enum, or `UNSPECIFIED`.
    #[error("transport {0} unknown")]
    UnknownTransport(i32),
    /// An IP address that is neither 4 nor 16 bytes.
    #[error("address of {len} bytes; an IP address is 4 or 16")]
    InvalidAddress {
        /// Its length.
        len: usize,
    },
    /// A port above 65535.
    #[error("port {0} out of range")]
    PortOutOfRange(u32),
    /// A key or signature field of the wrong length.
    #[error("{field} is {len} bytes")]
    BadLength {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// More items in a repeated field than its limit.
    #[error("{count} {field}; at most {max}")]
    TooMany {
        /// Which field.
        field: &'static str,
        /// How many there were.
        count: usize,
        /// Its limit.
        max: usize,
    },
    /// A name that is not a DNS label, or a host name that is not DNS labels.
    #[error("{0} is not a valid DNS name")]
    InvalidName(&'static str),
    /// A network whose prefix length exceeds its address's bits.
    #[error("network prefix length out of range")]
    InvalidNetwork,
    /// More than [`MAX_CANDIDATES`] candidates.
    #[error("{count} candidates; at most {MAX_CANDIDATES}")]
    TooManyCandidates {
        /// How many there were.
        count: usize,
    },
    /// A string longer than its limit.
    #[error("{field} is {len} bytes; at most {max}")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its limit.
        max: usize,
    },
}

impl SignalingMessage {
    /// The protobuf form, for sealing.
    pub fn to_proto(&self) -> proto::SignalingMessage {
        let kind = match self {
            Self::SessionDescription(sd) => {
                proto::signaling_message::Kind::SessionDescription(sd.to_proto())
            }
            Self::Announcement(announcement) => {
                proto::signaling_message::Kind::Announcement(announcement.to_proto())
            }
        };
        proto::SignalingMessage { kind: Some(kind) }
    }

    /// Parses the protobuf form.
    pub fn from_proto(message: proto::SignalingMessage) -> Result<Self, MessageError> {
        match message.kind {
            Some(proto::signaling_message::Kind::SessionDescription(sd)) => {
                SessionDescription::from_proto(sd).map(Self::SessionDescription)
            }
            Some(proto::signaling_message::Kind::Announcement(announcement)) => {
                crate::community::Announcement::from_proto(announcement).map(Self::Announcement)
            }
            None => Err(MessageError::UnknownKind),
        }
    }

    /// Checks the limits decoding enforces, so a sender cannot seal what peers would refuse.
    pub fn validate(&self) -> Result<(), MessageError> {
        match self {
            Self::SessionDescription(sd) => sd.validate(),
            Self::Announcement(announcement) => announcement.validate(),
        }
    }
}

impl SessionDescription {
    fn to_proto(&self) -> proto::SessionDescription {
        proto::SessionDescription {
            session_id: self.session_id,
            version: self.version,
            ice_ufrag: self.ice_ufrag.clone(),
            ice_pwd: self.ice_pwd.clone(),
            candidates: self.candidates.iter().map(Candidate::to_proto).collect(),
            end_of_candidates: self.end_of_candidates,
        }
    }

    fn from_proto(sd: proto::SessionDescription) -> Result<Self, MessageError> {
        if sd.candidates.len() > MAX_CANDIDATES {
            return Err(MessageError::TooManyCandidates {
                count: sd.candidates.len(),
            });
        }
        let candidates = sd
            .candidates
            .into_iter()
            .map(Candidate::from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let parsed = Self {
            session_id: sd.session_id,
            version: sd.version,
            ice_ufrag: sd.ice_ufrag,
            ice_pwd: sd.ice_pwd,
            candidates,
            end_of_candidates: sd.end_of_candidates,
        };
        parsed.validate()?;
        Ok(parsed)
    }

    fn validate(&self) -> Result<(), MessageError> {
        if self.candidates.len() > MAX_CANDIDATES {
            return Err(MessageError::TooManyCandidates {
                count: self.candidates.len(),
            });
        }
        check_len("ice_ufrag", &self.ice_ufrag, MAX_CREDENTIAL_LEN)?;
        check_len("ice_pwd", &self.ice_pwd, MAX_CREDENTIAL_LEN)?;
        for candidate in &self.candidates {
            check_len("foundation", &candidate.foundation, MAX_FOUNDATION_LEN)?;
        }
        Ok(())
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), MessageError> {
    if value.len() > max {
        Err(MessageError::FieldTooLong {
            field,
            len: value.len(),
            max,
        })
    } else {
        Ok(())
    }
}

impl Candidate {
    fn to_proto(&self) -> proto::Candidate {
        let kind = match self.kind {
            CandidateKind::Host => proto::CandidateType::Host,
            CandidateKind::ServerReflexive => proto::CandidateType::ServerReflexive,
            CandidateKind::PeerReflexive => proto::CandidateType::PeerReflexive,
            CandidateKind::Relayed => proto::CandidateType::Relayed,
        };
        let transport = match self.transport {
            Transport::Udp => proto::Transport::Udp,
            Transport::Tcp => proto::Transport::Tcp,
        };
        proto::Candidate {
            r#type: kind.into(),
            transport: transport.into(),
            address: ip_to_bytes(self.address.ip()),
            port: self.address.port().into(),
            priority: self.priority,
            foundation: self.foundation.clone(),
            related: self.related.map(|related| proto::SocketAddress {
                address: ip_to_bytes(related.ip()),
                port: related.port().into(),
            }),
        }
    }

    fn from_proto(candidate: proto::Candidate) -> Result<Self, MessageError> {
        let kind = match proto::CandidateType::try_from(candidate.r#type) {
            Ok(proto::CandidateType::Host) => CandidateKind::Host,
            Ok(proto::CandidateType::ServerReflexive) => CandidateKind::ServerReflexive,
            Ok(proto::CandidateType::PeerReflexive) => CandidateKind::PeerReflexive,
            Ok(proto::CandidateType::Relayed) => CandidateKind::Relayed,
            Ok(proto::CandidateType::Unspecified) | Err(_) => {
                return Err(MessageError::UnknownCandidateType(candidate.r#type));
            }
        };
        let transport = match proto::Transport::try_from(candidate.transport) {
            Ok(proto::Transport::Udp) => Transport::Udp,
            Ok(proto::Transport::Tcp) => Transport::Tcp,
            Ok(proto::Transport::Unspecified) | Err(_) => {
                return Err(MessageError::UnknownTransport(candidate.transport));
            }
        };
        let address = socket_addr(&candidate.address, candidate.port)?;
        let related = candidate
            .related
            .map(|related| socket_addr(&related.address, related.port))
            .transpose()?;
        Ok(Self {
            kind,
            transport,
            address,
            priority: candidate.priority,
            foundation: candidate.foundation,
            related,
        })
    }
}

fn ip_to_bytes(ip: IpAddr) -> prost::bytes::Bytes {
    match ip {
        IpAddr::V4(v4) => prost::bytes::Bytes::copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => prost::bytes::Bytes::copy_from_slice(&v6.octets()),
    }
}

fn socket_addr(address: &[u8], port: u32) -> Result<SocketAddr, MessageError> {
    let ip = if let Ok(v4) = <[u8; 4]>::try_from(address) {
        IpAddr::V4(Ipv4Addr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(address) {
        IpAddr::V6(Ipv6Addr::from(v6))
    } else {
        return Err(MessageError::InvalidAddress { len: address.len() });
    };
    let port = u16::try_from(port).map_err(|_| MessageError::PortOutOfRange(port))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> SignalingMessage {
        SignalingMessage::SessionDescription(SessionDescription {
            session_id: 0x1234_5678_9abc_def0,
            version: 3,
            ice_ufrag: "ufrag".to_owned(),
            ice_pwd: "a-password-of-22-chars".to_owned(),
            candidates: vec![
                Candidate {
                    kind: CandidateKind::Host,
                    transport: Transport::Udp,
                    address: "192.0.2.1:51820".parse().unwrap(),
                    priority: 2_130_706_431,
                    foundation: "1".to_owned(),
                    related: None,
                },
                Candidate {
                    kind: CandidateKind::ServerReflexive,
                    transport: Transport::Udp,
                    address: "[2001:db8::7]:40000".parse().unwrap(),
                    priority: 1_694_498_815,
                    foundation: "2".to_owned(),
                    related: Some("[fd00::1]:51820".parse().unwrap()),
                },
                Candidate {
                    kind: CandidateKind::Relayed,
                    transport: Transport::Tcp,
                    address: "198.51.100.9:3478".parse().unwrap(),
                    priority: 16_777_215,
                    foundation: "3".to_owned(),
                    related: Some("203.0.113.5:50000".parse().unwrap()),
                },
            ],
            end_of_candidates: true,
        })
    }

    fn proto_description(message: &SignalingMessage) -> proto::SessionDescription {
        match message.to_proto().kind {
            Some(proto::signaling_message::Kind::SessionDescription(sd)) => sd,
            _ => panic!("not a session description"),
        }
    }

    fn wrap(sd: proto::SessionDescription) -> proto::SignalingMessage {
        proto::SignalingMessage {
            kind: Some(proto::signaling_message::Kind::SessionDescription(sd)),
        }
    }

    #[test]
    fn a_session_description_survives_the_protobuf_round_trip() {
        let message = sample();
        assert_eq!(
            SignalingMessage::from_proto(message.to_proto()).unwrap(),
            message
        );
    }

    #[test]
    fn a_message_without_a_kind_is_unknown() {
        assert_eq!(
            SignalingMessage::from_proto(proto::SignalingMessage { kind: None }),
            Err(MessageError::UnknownKind)
        );
    }

    #[test]
    fn an_address_that_is_not_4_or_16_bytes_is_refused() {
        let mut sd = proto_description(&sample());
        sd.candidates[0].address = prost::bytes::Bytes::from_static(&[1, 2, 3, 4, 5]);
        assert_eq!(
            SignalingMessage::from_proto(wrap(sd)),
            Err(MessageError::InvalidAddress { len: 5 })
        );
    }

    #[test]
    fn a_port_above_65535_is_refused() {
        let mut sd = proto_description(&sample());
        sd.candidates[1].related.as_mut().unwrap().port = 65_536;
        assert_eq!(
            SignalingMessage::from_proto(wrap(sd)),
            Err(MessageError::PortOutOfRange(65_536))
        );
    }

    #[test]
    fn unspecified_or_unknown_enums_are_refused() {
        let mut sd = proto_description(&sample());
        sd.candidates[0].r#type = 0;
        assert_eq!(
            SignalingMessage::from_proto(wrap(sd)),
            Err(MessageError::UnknownCandidateType(0))
        );
        let mut sd = proto_description(&sample());
        sd.candidates[0].transport = 9;
        assert_eq!(
            SignalingMessage::from_proto(wrap(sd)),
            Err(MessageError::UnknownTransport(9))
        );
    }

    #[test]
    fn more_than_64_candidates_are_refused_on_both_sides() {
        let SignalingMessage::SessionDescription(mut sd) = sample() else {
            panic!("the sample is a session description")
        };
        let one = sd.candidates[0].clone();
        sd.candidates = vec![one; MAX_CANDIDATES + 1];
        let message = SignalingMessage::SessionDescription(sd);
        assert_eq!(
            message.validate(),
            Err(MessageError::TooManyCandidates { count: 65 })
        );
        assert_eq!(
            SignalingMessage::from_proto(message.to_proto()),
            Err(MessageError::TooManyCandidates { count: 65 })
        );
    }

    #[test]
    fn over_long_credentials_and_foundations_are_refused() {
        let SignalingMessage::SessionDescription(mut sd) = sample() else {
            panic!("the sample is a session description")
        };
        sd.ice_pwd = "p".repeat(MAX_CREDENTIAL_LEN + 1);
        assert_eq!(
            SignalingMessage::SessionDescription(sd).validate(),
            Err(MessageError::FieldTooLong {
                field: "ice_pwd",
                len: 257,
                max: 256
            })
        );
        let SignalingMessage::SessionDescription(mut sd) = sample() else {
            panic!("the sample is a session description")
        };
        sd.candidates[2].foundation = "f".repeat(33);
        let message = SignalingMessage::SessionDescription(sd);
        assert!(matches!(
            SignalingMessage::from_proto(message.to_proto()),
            Err(MessageError::FieldTooLong {
                field: "foundation",
                ..
            })
        ));
    }
}
