//! The WebSocket transport's frames: what `ws://` clients and `wice signal --ws-listen`
//! exchange, one binary WebSocket message per frame.
//!
//! A frame is one tag byte and a protobuf message of the gRPC service's own types, so the
//! two transports share their messages and limits:
//!
//! | direction | tag | body |
//! |---|---|---|
//! | client → server | 1 | `SubscribeRequest` (the hello, then the answer to the challenge) |
//! | client → server | 2 | `PublishRequest` (envelopes sent as the key proven on this socket) |
//! | server → client | 1 | `SubscribeResponse` (challenge, subscribed, then envelopes) |
//! | server → client | 2 | `PublishResponse`, one per publish frame, in order |
//! | server → client | 3 | a refusal: one code byte and a short UTF-8 reason |
//!
//! One socket carries one subscription (one key). Text frames, unknown tags and bodies that
//! are not protobuf are refused. [`ClientFrame::decode`] is the server's parser of bytes from
//! strangers (a fuzz target runs it); sizes are bounded by the WebSocket layer before it.

use prost::bytes::Bytes;
use wice_proto::signaling as proto;

use wice_core::signaling::size_limits::{MAX_REQUEST_LEN, MAX_RESPONSE_LEN};

/// Where the WebSocket is served.
pub const WS_PATH: &str = "/v1/ws";
/// Where the HTTP publish endpoint hands out key-proof challenges.
pub const CHALLENGE_PATH: &str = "/v1/challenge";
/// The HTTP publish endpoint.
pub const PUBLISH_PATH: &str = "/v1/publish";
/// The HTTP publish endpoint's header naming the proven key (base64).
pub const KEY_HEADER: &str = "wice-key";
/// The HTTP publish endpoint's header carrying the proof's expiry (decimal Unix seconds).
pub const EXPIRY_HEADER: &str = "wice-expiry";
/// The HTTP publish endpoint's header carrying the opened challenge secret (base64).
pub const PROOF_HEADER: &str = "wice-proof";

/// Largest frame a client sends: a full publish request and its tag.
pub const MAX_CLIENT_FRAME_LEN: usize = 1 + MAX_REQUEST_LEN;
/// Largest frame a server sends: one envelope event and its tag.
pub const MAX_SERVER_FRAME_LEN: usize = 1 + MAX_RESPONSE_LEN;
/// Longest refusal reason sent or kept.
pub const MAX_REASON_LEN: usize = 200;

const TAG_SUBSCRIBE: u8 = 1;
const TAG_PUBLISH: u8 = 2;
const TAG_REFUSED: u8 = 3;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// A step of the key proof.
    Step(proto::SubscribeRequest),
    /// Envelopes to publish.
    Publish(proto::PublishRequest),
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// A subscription event.
    Event(proto::SubscribeResponse),
    /// The outcome of one publish frame.
    Published(proto::PublishResponse),
    /// A request refused; after a refused key proof the server closes the socket.
    Refused(Refusal),
}

/// Why the server refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// Malformed input or a step out of order.
    Malformed,
    /// The key proof failed, or a publish came before it.
    Unauthenticated,
    /// Over the rate limit.
    RateLimited,
    /// The server is at a capacity limit.
    Capacity,
    /// The server is shutting down.
    Unavailable,
}

impl RefusalCode {
    fn to_byte(self) -> u8 {
        match self {
            Self::Malformed => 1,
            Self::Unauthenticated => 2,
            Self::RateLimited => 3,
            Self::Capacity => 4,
            Self::Unavailable => 5,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Malformed,
            2 => Self::Unauthenticated,
            3 => Self::RateLimited,
            4 => Self::Capacity,
            5 => Self::Unavailable,
            _ => return None,
        })
    }
}

/// A refusal and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// Why, for logs; at most [`MAX_REASON_LEN`] bytes.
    pub reason: String,
}

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No bytes at all.
    #[error("empty frame")]
    Empty,
    /// A tag this side does not know.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// Longer than the limit for its direction.
    #[error("frame of {len} bytes is over the limit")]
    Oversized {
        /// Its length.
        len: usize,
    },
    /// The body is not the protobuf message its tag names.
    #[error("frame body does not decode: {0}")]
    Body(String),
    /// A refusal with an unknown code.
    #[error("refusal with unknown code {0}")]
    BadRefusal(u8),
}

fn tagged(tag: u8, message: &impl prost::Message) -> Bytes {
    let mut bytes = Vec::with_capacity(1 + message.encoded_len());
    bytes.push(tag);
    // Writing into a Vec cannot run out of room.
    let _ = message.encode(&mut bytes);
    Bytes::from(bytes)
}

fn body<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, FrameError> {
    M::decode(bytes).map_err(|e| FrameError::Body(e.to_string()))
}

impl ClientFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Step(step) => tagged(TAG_SUBSCRIBE, step),
            Self::Publish(request) => tagged(TAG_PUBLISH, request),
        }
    }

    /// Parses a client's frame. Pure: bytes in, frame or error out.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_CLIENT_FRAME_LEN {
            return Err(FrameError::Oversized { len: bytes.len() });
        }
        let (&tag, rest) = bytes.split_first().ok_or(FrameError::Empty)?;
        match tag {
            TAG_SUBSCRIBE => Ok(Self::Step(body(rest)?)),
            TAG_PUBLISH => Ok(Self::Publish(body(rest)?)),
            other => Err(FrameError::UnknownTag(other)),
        }
    }
}

impl ServerFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Event(event) => tagged(TAG_SUBSCRIBE, event),
            Self::Published(response) => tagged(TAG_PUBLISH, response),
            Self::Refused(refusal) => {
                let reason = truncated(&refusal.reason);
                let mut bytes = Vec::with_capacity(2 + reason.len());
                bytes.push(TAG_REFUSED);
                bytes.push(refusal.code.to_byte());
                bytes.extend_from_slice(reason.as_bytes());
                Bytes::from(bytes)
            }
        }
    }

    /// An envelope event, built around the envelope's bytes.
    pub fn envelope(bytes: Bytes) -> Bytes {
        Self::Event(proto::SubscribeResponse {
            event: Some(proto::subscribe_response::Event::Envelope(bytes)),
        })
        .encode()
    }

    /// Parses a server's frame (the client's side; the server need not be trusted).
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_SERVER_FRAME_LEN {
            return Err(FrameError::Oversized { len: bytes.len() });
        }
        let (&tag, rest) = bytes.split_first().ok_or(FrameError::Empty)?;
        match tag {
            TAG_SUBSCRIBE => Ok(Self::Event(body(rest)?)),
            TAG_PUBLISH => Ok(Self::Published(body(rest)?)),
            TAG_REFUSED => {
                let (&code, reason) = rest.split_first().ok_or(FrameError::Empty)?;
                let code = RefusalCode::from_byte(code).ok_or(FrameError::BadRefusal(code))?;
                // Lossy decoding turns each bad byte into a three-byte replacement
                // character, so the text is cut again after it: a reason kept is at most
                // MAX_REASON_LEN bytes and encodes back to itself.
                let reason = String::from_utf8_lossy(&reason[..reason.len().min(MAX_REASON_LEN)]);
                Ok(Self::Refused(Refusal {
                    code,
                    reason: truncated(&reason).to_owned(),
                }))
            }
            other => Err(FrameError::UnknownTag(other)),
        }
    }
}

/// `text` cut to at most [`MAX_REASON_LEN`] bytes on a character boundary.
fn truncated(text: &str) -> &str {
    let mut end = text.len().min(MAX_REASON_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_kind_round_trips() {
        let hello = ClientFrame::Step(proto::SubscribeRequest {
            step: Some(proto::subscribe_request::Step::Hello(proto::Hello {
                public_key: Bytes::from_static(&[7; 32]),
                group: true,
            })),
        });
        let publish = ClientFrame::Publish(proto::PublishRequest {
            envelopes: vec![Bytes::from_static(b"abc"), Bytes::new()],
        });
        for frame in [hello, publish] {
            assert_eq!(ClientFrame::decode(&frame.encode()), Ok(frame));
        }
        let refused = ServerFrame::Refused(Refusal {
            code: RefusalCode::RateLimited,
            reason: "slow down".to_owned(),
        });
        let published = ServerFrame::Published(proto::PublishResponse {
            delivered: 3,
            rejected: 1,
        });
        for frame in [refused, published] {
            assert_eq!(ServerFrame::decode(&frame.encode()), Ok(frame));
        }
        assert_eq!(
            ServerFrame::decode(&ServerFrame::envelope(Bytes::from_static(b"sealed"))),
            Ok(ServerFrame::Event(proto::SubscribeResponse {
                event: Some(proto::subscribe_response::Event::Envelope(
                    Bytes::from_static(b"sealed")
                )),
            }))
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(ClientFrame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(ClientFrame::decode(&[3, 0]), Err(FrameError::UnknownTag(3)));
        assert!(matches!(
            ClientFrame::decode(&[1, 0xff, 0xff]),
            Err(FrameError::Body(_))
        ));
        let huge = vec![2u8; MAX_CLIENT_FRAME_LEN + 1];
        assert_eq!(
            ClientFrame::decode(&huge),
            Err(FrameError::Oversized { len: huge.len() })
        );
        assert_eq!(ServerFrame::decode(&[3]), Err(FrameError::Empty));
        assert_eq!(ServerFrame::decode(&[3, 9]), Err(FrameError::BadRefusal(9)));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let frame = ServerFrame::Refused(Refusal {
            code: RefusalCode::Malformed,
            reason: "é".repeat(MAX_REASON_LEN),
        });
        let Ok(ServerFrame::Refused(refusal)) = ServerFrame::decode(&frame.encode()) else {
            panic!("a refusal");
        };
        assert_eq!(refusal.reason, "é".repeat(MAX_REASON_LEN / 2));
    }

    #[test]
    fn a_reason_of_invalid_utf8_stays_within_the_limit_and_round_trips() {
        // Found by the ws_frame fuzz target: replacement characters grew the reason past
        // the limit, so encoding cut it and the frame no longer round-tripped.
        let mut bytes = vec![TAG_REFUSED, 3, 11, 0];
        bytes.extend(std::iter::repeat_n(150u8, 116));
        bytes.extend([119, 32, 100]);
        let frame = ServerFrame::decode(&bytes).expect("a refusal");
        let ServerFrame::Refused(refusal) = &frame else {
            panic!("a refusal");
        };
        assert!(refusal.reason.len() <= MAX_REASON_LEN);
        assert_eq!(ServerFrame::decode(&frame.encode()), Ok(frame));
    }
}
