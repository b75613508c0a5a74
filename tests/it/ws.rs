//! `wice signal --ws-listen` against hostile clients (raw WebSocket frames and raw HTTP
//! requests), the HTTP publish endpoint, a WebSocket node meeting a gRPC node, and the
//! WebSocket backend through a real HTTP proxy. Loopback only, no root.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use prost::Message as _;
use prost::bytes::Bytes;
use rand_core::OsRng;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_stream::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;
use wice::signaling::server::ServerConfig;
use wice::signaling::ws_frame::{
    CHALLENGE_PATH, ClientFrame, EXPIRY_HEADER, KEY_HEADER, PROOF_HEADER, PUBLISH_PATH,
    RefusalCode, ServerFrame, WS_PATH,
};
use wice::signaling::{Backend, BackendUrl, GrpcBackend, WsBackend};
use wice_core::keys::PrivateKey;
use wice_core::signaling::Sealer;
use wice_core::signaling::challenge;
use wice_proto::signaling as proto;

use crate::conformance::quick_ws;
use crate::signaling::{
    Peer, QUIET, RunningServer, WAIT, description, exchange_until_all_heard, loopback_config,
    loopback_url, quick_reconnect, session_id,
};

async fn ws_server() -> RunningServer {
    RunningServer::start(ServerConfig {
        ws_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..loopback_config()
    })
    .await
}

fn ws_url(server: &RunningServer) -> BackendUrl {
    BackendUrl::WebSocket {
        host: "127.0.0.1".to_owned(),
        port: server.ws_addr.expect("a ws listener").port(),
        tls: false,
    }
}

type RawSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A raw WebSocket to the server, with nothing sent yet.
async fn raw_socket(server: &RunningServer) -> RawSocket {
    let addr = server.ws_addr.expect("a ws listener");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (socket, _) = tokio_tungstenite::client_async(format!("ws://{addr}{WS_PATH}"), tcp)
        .await
        .expect("WebSocket handshake");
    socket
}

async fn send(socket: &mut RawSocket, frame: ClientFrame) {
    use futures_sink::Sink as _;
    let mut socket = std::pin::Pin::new(socket);
    std::future::poll_fn(|cx| socket.as_mut().poll_ready(cx))
        .await
        .expect("ready");
    socket
        .as_mut()
        .start_send(Message::Binary(frame.encode()))
        .expect("send");
    std::future::poll_fn(|cx| socket.as_mut().poll_flush(cx))
        .await
        .expect("flush");
}

/// The next frame from the server; `None` once the socket closed.
async fn receive(socket: &mut RawSocket) -> Option<ServerFrame> {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("an answer in time")
        {
            Some(Ok(Message::Binary(bytes))) => {
                return Some(ServerFrame::decode(&bytes).expect("a server frame"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
        }
    }
}

fn hello(key: &PrivateKey) -> ClientFrame {
    ClientFrame::Step(proto::SubscribeRequest {
        step: Some(proto::subscribe_request::Step::Hello(proto::Hello {
            public_key: Bytes::copy_from_slice(key.public_key().as_bytes()),
            group: false,
        })),
    })
}

/// Proves `key` on a raw socket, as a well-behaved client does.
async fn prove(socket: &mut RawSocket, key: &PrivateKey) {
    send(socket, hello(key)).await;
    let Some(ServerFrame::Event(proto::SubscribeResponse {
        event: Some(proto::subscribe_response::Event::Challenge(challenge)),
    })) = receive(socket).await
    else {
        panic!("expected a challenge");
    };
    let secret = challenge::answer(key, &challenge).expect("answer");
    send(
        socket,
        ClientFrame::Step(proto::SubscribeRequest {
            step: Some(proto::subscribe_request::Step::Answer(
                proto::ChallengeAnswer {
                    secret: secret.into(),
                },
            )),
        }),
    )
    .await;
    assert!(
        matches!(
            receive(socket).await,
            Some(ServerFrame::Event(proto::SubscribeResponse {
                event: Some(proto::subscribe_response::Event::Subscribed(_))
            }))
        ),
        "subscribed"
    );
}

fn sealed(from: &PrivateKey, to: &wice_core::keys::PublicKey, id: u64) -> Bytes {
    Sealer::new(from)
        .seal(to, &description(id, 0), SystemTime::now(), &mut OsRng)
        .expect("seal")
        .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_publish_before_the_key_proof_is_refused_and_nothing_is_delivered() {
    let server = ws_server().await;
    let mut bob = Peer::start(
        PrivateKey::generate(),
        vec![Arc::new(
            WsBackend::new(&ws_url(&server), quick_ws(None)).expect("backend"),
        )],
    )
    .await;
    let alice = PrivateKey::generate();
    let mut socket = raw_socket(&server).await;
    send(
        &mut socket,
        ClientFrame::Publish(proto::PublishRequest {
            envelopes: vec![sealed(&alice, &bob.public(), 1)],
        }),
    )
    .await;
    let Some(ServerFrame::Refused(refusal)) = receive(&mut socket).await else {
        panic!("expected a refusal");
    };
    assert_eq!(refusal.code, RefusalCode::Unauthenticated);
    assert_eq!(receive(&mut socket).await, None, "the socket is closed");
    bob.assert_nothing_for(QUIET).await;
    assert_eq!(server.counters.snapshot().accepted, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_publishes_only_as_the_key_it_proved() {
    let server = ws_server().await;
    let mut bob = Peer::start(
        PrivateKey::generate(),
        vec![Arc::new(
            WsBackend::new(&ws_url(&server), quick_ws(None)).expect("backend"),
        )],
    )
    .await;
    let (alice, mallory) = (PrivateKey::generate(), PrivateKey::generate());
    let mut socket = raw_socket(&server).await;
    prove(&mut socket, &mallory).await;
    // Alice's name on an envelope Mallory sealed, and Mallory's own.
    let mut forged = Sealer::new(&mallory)
        .seal(
            &bob.public(),
            &description(1, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal");
    forged.sender = alice.public_key();
    send(
        &mut socket,
        ClientFrame::Publish(proto::PublishRequest {
            envelopes: vec![forged.encode(), sealed(&mallory, &bob.public(), 2)],
        }),
    )
    .await;
    let Some(ServerFrame::Published(response)) = receive(&mut socket).await else {
        panic!("expected a publish answer");
    };
    assert_eq!((response.delivered, response.rejected), (1, 1));
    let got = bob.next(WAIT).await;
    assert_eq!(
        (got.sender, session_id(&got.message)),
        (mallory.public_key(), 2)
    );
    bob.assert_nothing_for(QUIET).await;
    assert_eq!(server.counters.snapshot().sender_not_proven, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_answer_or_a_text_frame_is_refused_and_the_server_stays_up() {
    let server = ws_server().await;
    let key = PrivateKey::generate();
    let mut socket = raw_socket(&server).await;
    send(&mut socket, hello(&key)).await;
    assert!(matches!(
        receive(&mut socket).await,
        Some(ServerFrame::Event(_))
    ));
    send(
        &mut socket,
        ClientFrame::Step(proto::SubscribeRequest {
            step: Some(proto::subscribe_request::Step::Answer(
                proto::ChallengeAnswer {
                    secret: Bytes::from_static(&[0; 32]),
                },
            )),
        }),
    )
    .await;
    let Some(ServerFrame::Refused(refusal)) = receive(&mut socket).await else {
        panic!("expected a refusal");
    };
    assert_eq!(refusal.code, RefusalCode::Unauthenticated);
    assert_eq!(server.counters.snapshot().auth_failed, 1);

    let mut socket = raw_socket(&server).await;
    use futures_sink::Sink as _;
    let mut pinned = std::pin::Pin::new(&mut socket);
    std::future::poll_fn(|cx| pinned.as_mut().poll_ready(cx))
        .await
        .expect("ready");
    pinned
        .as_mut()
        .start_send(Message::text("{\"hello\": true}"))
        .expect("send");
    std::future::poll_fn(|cx| pinned.as_mut().poll_flush(cx))
        .await
        .expect("flush");
    let Some(ServerFrame::Refused(refusal)) = receive(&mut socket).await else {
        panic!("expected a refusal");
    };
    assert_eq!(refusal.code, RefusalCode::Malformed);

    // A frame over the limit ends its socket before it is buffered whole; others go on.
    let mut socket = raw_socket(&server).await;
    let huge = vec![2u8; 2 * 1024 * 1024];
    let mut pinned = std::pin::Pin::new(&mut socket);
    let _ = std::future::poll_fn(|cx| pinned.as_mut().poll_ready(cx)).await;
    let _ = pinned.as_mut().start_send(Message::Binary(huge.into()));
    let _ = std::future::poll_fn(|cx| pinned.as_mut().poll_flush(cx)).await;
    assert_eq!(receive(&mut socket).await, None, "the socket is closed");

    let mut socket = raw_socket(&server).await;
    prove(&mut socket, &PrivateKey::generate()).await;
    server.stop().await;
}

/// A raw HTTP/1.1 request; the status code and body of the answer.
async fn http(server: &RunningServer, request: String, body: &[u8]) -> (u16, Vec<u8>) {
    let mut tcp = TcpStream::connect(server.ws_addr.expect("a ws listener"))
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    tcp.write_all(body).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let status = String::from_utf8_lossy(&answer[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, answer[head_end + 4..].to_vec())
}

fn post(path: &str, headers: &[(&str, String)], body_len: usize) -> String {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: signal\r\nConnection: close\r\nContent-Length: {body_len}\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// The proof headers for `key`, from the server's challenge.
async fn http_proof(server: &RunningServer, key: &PrivateKey) -> Vec<(&'static str, String)> {
    let public = key.public_key();
    let (status, body) = http(server, post(CHALLENGE_PATH, &[], 32), public.as_bytes()).await;
    assert_eq!(status, 200);
    let expiry = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
    let challenge = proto::Challenge::decode(&body[8..]).expect("a challenge");
    let secret = challenge::answer(key, &challenge).expect("answer");
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        (KEY_HEADER, b64.encode(public.as_bytes())),
        (EXPIRY_HEADER, expiry.to_string()),
        (PROOF_HEADER, b64.encode(secret)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_post_with_a_key_proof_reaches_the_subscriber_and_bad_ones_are_refused() {
    let server = ws_server().await;
    let mut bob = Peer::start(
        PrivateKey::generate(),
        vec![Arc::new(
            WsBackend::new(&ws_url(&server), quick_ws(None)).expect("backend"),
        )],
    )
    .await;
    let (alice, mallory) = (PrivateKey::generate(), PrivateKey::generate());
    let proof = http_proof(&server, &alice).await;
    let envelope = sealed(&alice, &bob.public(), 5);
    let (status, body) = http(
        &server,
        post(PUBLISH_PATH, &proof, envelope.len()),
        &envelope,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        proto::PublishResponse::decode(body.as_slice())
            .expect("an answer")
            .delivered,
        1
    );
    let got = bob.next(WAIT).await;
    assert_eq!(
        (got.sender, session_id(&got.message)),
        (alice.public_key(), 5)
    );

    // No proof; a proof for another key; a forged proof; an envelope in someone else's name;
    // a body over the limit.
    let (status, _) = http(&server, post(PUBLISH_PATH, &[], envelope.len()), &envelope).await;
    assert_eq!(status, 401);
    let mallory_proof = http_proof(&server, &mallory).await;
    let mut wrong_key = mallory_proof.clone();
    wrong_key[0] = proof[0].clone();
    let (status, _) = http(
        &server,
        post(PUBLISH_PATH, &wrong_key, envelope.len()),
        &envelope,
    )
    .await;
    assert_eq!(status, 401);
    let mut forged = proof.clone();
    forged[2].1 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let (status, _) = http(
        &server,
        post(PUBLISH_PATH, &forged, envelope.len()),
        &envelope,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(
        &server,
        post(PUBLISH_PATH, &mallory_proof, envelope.len()),
        &envelope,
    )
    .await;
    assert_eq!(status, 403);
    let huge = vec![0u8; 64 * 1024];
    let (status, _) = http(&server, post(PUBLISH_PATH, &proof, huge.len()), &huge).await;
    assert_eq!(status, 413);
    let (status, _) = http(&server, post(CHALLENGE_PATH, &[], 3), b"abc").await;
    assert_eq!(status, 400);
    let (status, _) = http(
        &server,
        "GET /v1/ws HTTP/1.1\r\nHost: signal\r\nConnection: close\r\n\r\n".to_owned(),
        b"",
    )
    .await;
    assert_eq!(status, 400, "a GET that is not an upgrade");
    let (status, _) = http(
        &server,
        "GET /etc/passwd HTTP/1.1\r\nHost: signal\r\nConnection: close\r\n\r\n".to_owned(),
        b"",
    )
    .await;
    assert_eq!(status, 404);

    bob.assert_nothing_for(QUIET).await;
    let counters = server.counters.snapshot();
    assert_eq!(counters.auth_failed, 3);
    assert_eq!(counters.sender_not_proven, 1);
    assert_eq!(counters.rejected_oversized, 1);
    server.stop().await;
}

/// One node on the WebSocket transport, one on gRPC, both at one `wice signal`: they hear
/// each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_node_and_a_grpc_node_reach_each_other_through_one_server() {
    let server = ws_server().await;
    let grpc: Arc<dyn Backend> = Arc::new(
        GrpcBackend::new(&loopback_url(server.addr.port(), false), quick_reconnect())
            .expect("backend"),
    );
    let ws: Arc<dyn Backend> =
        Arc::new(WsBackend::new(&ws_url(&server), quick_ws(None)).expect("backend"));
    let mut peers = vec![
        Peer::start(PrivateKey::generate(), vec![ws]).await,
        Peer::start(PrivateKey::generate(), vec![grpc]).await,
    ];
    let keys: Vec<_> = peers.iter().map(Peer::public).collect();
    exchange_until_all_heard(&mut peers, &keys, 0).await;
    server.stop().await;
}

/// What the daemon does when its addresses change: every socket is replaced and every
/// subscription proven again, and the server holds the new ones instead of adding to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reconnect_replaces_every_socket_and_keeps_every_subscription() {
    let server = ws_server().await;
    let mut peers = Vec::new();
    let mut backends = Vec::new();
    for _ in 0..2 {
        let backend = Arc::new(WsBackend::new(&ws_url(&server), quick_ws(None)).expect("backend"));
        backends.push(Arc::clone(&backend));
        peers.push(Peer::start(PrivateKey::generate(), vec![backend]).await);
    }
    let keys: Vec<_> = peers.iter().map(Peer::public).collect();
    exchange_until_all_heard(&mut peers, &keys, 0).await;
    for peer in &peers {
        peer.signaling.reconnect().await;
    }
    exchange_until_all_heard(&mut peers, &keys, 1).await;
    assert_eq!(
        server.counters.snapshot().subscriptions,
        2,
        "the old subscriptions were replaced, not added to"
    );
    for backend in &backends {
        assert_eq!(
            backend.counters().subscriptions_established,
            2,
            "proven twice"
        );
    }
    server.stop().await;
}
