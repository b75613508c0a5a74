//! The STUN messages of NAT behaviour discovery (RFC 5780 §7): a Binding request that may
//! carry CHANGE-REQUEST, and the parts of a success response the tests read
//! (XOR-MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN).
//!
//! `stun-types` (through the TURN client) has no types for the RFC 5780 attributes, so they
//! go in and out as raw attributes; addresses in them use MAPPED-ADDRESS's encoding.

use std::net::SocketAddr;

use turn_client_proto::types::stun::attribute::{
    AttributeType, MappedSocketAddr, RawAttribute, XorMappedAddress,
};
use turn_client_proto::types::stun::message::{
    BINDING, Message, MessageClass, MessageType, MessageWriteVec, TransactionId,
};
use turn_client_proto::types::stun::prelude::*;

/// CHANGE-REQUEST (RFC 5780 §7.2): ask the server to answer from its other address or port.
const CHANGE_REQUEST: AttributeType = AttributeType::new(0x0003);
/// RESPONSE-ORIGIN (RFC 5780 §7.3): the address the server sent the answer from.
const RESPONSE_ORIGIN: AttributeType = AttributeType::new(0x802B);
/// OTHER-ADDRESS (RFC 5780 §7.4): the server's alternate address and port.
const OTHER_ADDRESS: AttributeType = AttributeType::new(0x802C);
const CHANGE_IP: u8 = 0x04;
const CHANGE_PORT: u8 = 0x02;

/// Where a request asks the server to answer from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// Answer from the other IP address.
    pub ip: bool,
    /// Answer from the other port.
    pub port: bool,
}

impl Change {
    /// A plain Binding request: answer from where the request arrived.
    pub const NONE: Self = Self {
        ip: false,
        port: false,
    };
    /// Answer from the other address and the other port.
    pub const IP_AND_PORT: Self = Self {
        ip: true,
        port: true,
    };
    /// Answer from the same address's other port.
    pub const PORT: Self = Self {
        ip: false,
        port: true,
    };
}

/// A Binding request with transaction id `transaction`, asking for `change`.
pub(crate) fn binding_request(transaction: u128, change: Change) -> Vec<u8> {
    let kind = MessageType::from_class_method(MessageClass::Request, BINDING);
    let mut message = Message::builder(
        kind,
        TransactionId::from(transaction),
        MessageWriteVec::new(),
    );
    if change != Change::NONE {
        let flags = (u8::from(change.ip) * CHANGE_IP) | (u8::from(change.port) * CHANGE_PORT);
        let value = [0, 0, 0, flags];
        // Only fails when the message is over its size limit, which 32 bytes are not.
        let _ = message.add_attribute(&RawAttribute::new(CHANGE_REQUEST, &value));
    }
    let _ = message.add_fingerprint();
    message.finish()
}

/// What a Binding success response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingAnswer {
    /// The transaction it answers.
    pub transaction: u128,
    /// Where the server saw the request come from.
    pub mapped: SocketAddr,
    /// The server's alternate address, when it does RFC 5780.
    pub other: Option<SocketAddr>,
    /// The address the server says it answered from.
    pub origin: Option<SocketAddr>,
}

/// Reads a Binding success response; `None` for anything else (requests, errors, other
/// methods, garbage, an answer without XOR-MAPPED-ADDRESS).
pub(crate) fn parse_binding_success(datagram: &[u8]) -> Option<BindingAnswer> {
    let message = Message::from_bytes(datagram).ok()?;
    if message.method() != BINDING || !message.has_class(MessageClass::Success) {
        return None;
    }
    let transaction = message.transaction_id();
    let mapped = message
        .attribute::<XorMappedAddress>()
        .ok()?
        .addr(transaction);
    let address = |atype| {
        message
            .raw_attribute(atype)
            .and_then(|raw| MappedSocketAddr::from_raw(&raw).ok())
            .map(|a| a.addr())
    };
    Some(BindingAnswer {
        transaction: transaction.into(),
        mapped,
        other: address(OTHER_ADDRESS),
        origin: address(RESPONSE_ORIGIN),
    })
}

/// The change a Binding request asks for; `None` when `datagram` is no Binding request.
/// For test servers.
pub fn requested_change(datagram: &[u8]) -> Option<(u128, Change)> {
    let message = Message::from_bytes(datagram).ok()?;
    if message.method() != BINDING || !message.has_class(MessageClass::Request) {
        return None;
    }
    let flags = message
        .raw_attribute(CHANGE_REQUEST)
        .and_then(|raw| raw.value.get(3).copied())
        .unwrap_or(0);
    Some((
        message.transaction_id().into(),
        Change {
            ip: flags & CHANGE_IP != 0,
            port: flags & CHANGE_PORT != 0,
        },
    ))
}

/// A server's success answer to the request with `transaction`: it saw it from `mapped`,
/// answers from `origin` and names `other` as its alternate address. For test servers.
pub fn binding_success(
    transaction: u128,
    mapped: SocketAddr,
    origin: SocketAddr,
    other: Option<SocketAddr>,
) -> Vec<u8> {
    let id = TransactionId::from(transaction);
    let kind = MessageType::from_class_method(MessageClass::Success, BINDING);
    let mut reply = Message::builder(kind, id, MessageWriteVec::new());
    let _ = reply.add_attribute(&XorMappedAddress::new(mapped, id));
    let _ = reply.add_attribute(&MappedSocketAddr::new(origin).to_raw(RESPONSE_ORIGIN));
    if let Some(other) = other {
        let _ = reply.add_attribute(&MappedSocketAddr::new(other).to_raw(OTHER_ADDRESS));
    }
    reply.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_change_request_round_trips_and_a_plain_request_asks_for_none() {
        for change in [Change::NONE, Change::PORT, Change::IP_AND_PORT] {
            let request = binding_request(42, change);
            assert_eq!(requested_change(&request), Some((42, change)));
        }
        assert_eq!(requested_change(b"not stun at all, twenty+ bytes"), None);
    }

    #[test]
    fn an_answer_yields_mapped_other_and_origin_and_non_answers_yield_none() {
        let answer = binding_success(
            7,
            addr("198.51.100.9:40001"),
            addr("203.0.113.3:3479"),
            Some(addr("203.0.113.3:3479")),
        );
        assert_eq!(
            parse_binding_success(&answer),
            Some(BindingAnswer {
                transaction: 7,
                mapped: addr("198.51.100.9:40001"),
                other: Some(addr("203.0.113.3:3479")),
                origin: Some(addr("203.0.113.3:3479")),
            })
        );
        let plain = binding_success(8, addr("[2001:db8::1]:5"), addr("[2001:db8::2]:3478"), None);
        let parsed = parse_binding_success(&plain).unwrap();
        assert_eq!(parsed.mapped, addr("[2001:db8::1]:5"));
        assert_eq!(parsed.other, None);
        assert_eq!(
            parse_binding_success(&binding_request(7, Change::NONE)),
            None
        );
        assert_eq!(parse_binding_success(&answer[..answer.len() - 4]), None);
        assert_eq!(parse_binding_success(&[]), None);
    }
}
