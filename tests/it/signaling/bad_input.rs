//! `wice signal` under bad input: raw TCP garbage, half HTTP/2 prefaces, bodies that are not
//! protobuf, bad envelopes, oversized requests, a silent key proof, a subscriber that never
//! reads, and publishers over the rate limit. Well-formed clients keep being served.

use super::*;

/// Sends raw bytes as a gRPC message body, whatever they are.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

async fn raw_publish(channel: Channel, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/wice.signaling.v1.Signaling/Publish",
    );
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Bytes that look random enough to be garbage, without an RNG dependency.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_serving_well_formed_clients_while_others_send_garbage() {
    use std::io::Write as _;

    let server = RunningServer::start(ServerConfig {
        auth_timeout: Duration::from_millis(300),
        queue_len: 8,
        rate_per_second: 100_000,
        burst: 100_000,
        ..loopback_config()
    })
    .await;
    let addr = server.addr;
    let url = loopback_url(addr.port(), false);
    let backend = || -> Arc<dyn Backend> {
        Arc::new(GrpcBackend::new(&url, quick_reconnect()).expect("backend"))
    };
    let alice = Peer::start(PrivateKey::generate(), vec![backend()]).await;
    let mut bob = Peer::start(PrivateKey::generate(), vec![backend()]).await;

    // 1. Raw TCP garbage, and a connection that stalls halfway through the HTTP/2 preface.
    let mut raw = std::net::TcpStream::connect(addr).expect("tcp");
    raw.write_all(&garbage(4096, 1)).expect("garbage");
    let mut stalled = std::net::TcpStream::connect(addr).expect("tcp");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("half a preface");

    // 2. Bodies that are not protobuf at all, and envelopes that are not envelopes.
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_lazy();
    for seed in 0..20 {
        let _ = raw_publish(channel.clone(), garbage(200, seed)).await;
    }
    // Publishing needs a key proven on the connection.
    let prover = PrivateKey::generate();
    let _proof = subscribe_on(channel.clone(), prover.public_key(), |challenge| {
        wice_core::signaling::challenge::answer(&prover, challenge).expect("answer")
    })
    .await
    .expect("prove a key");
    let mut client = SignalingClient::new(channel.clone());
    let junk = proto::PublishRequest {
        envelopes: (0..10)
            .map(|seed| Bytes::from(garbage(100, seed + 100)))
            .collect(),
    };
    let response = client
        .publish(junk)
        .await
        .expect("a bad envelope fails alone")
        .into_inner();
    assert_eq!((response.delivered, response.rejected), (0, 10));
    let huge = proto::PublishRequest {
        envelopes: vec![Bytes::from(vec![0u8; 65 * 1024])],
    };
    assert_eq!(
        client
            .publish(huge)
            .await
            .expect("ok")
            .into_inner()
            .rejected,
        1
    );
    let too_many = proto::PublishRequest {
        envelopes: vec![Bytes::from_static(b"x"); 1025],
    };
    assert_eq!(
        client.publish(too_many).await.expect_err("refused").code(),
        Code::InvalidArgument
    );
    let over_limit = proto::PublishRequest {
        envelopes: vec![Bytes::from(vec![0u8; 60 * 1024]); 80],
    };
    assert!(
        client.publish(over_limit).await.is_err(),
        "a 4.8 MB request is refused"
    );

    // 3. A subscriber that says hello and never answers the challenge.
    let silent_key = PrivateKey::generate().public_key();
    let silent = tokio::spawn(async move {
        subscribe_raw(addr, silent_key, |_| {
            std::thread::sleep(Duration::from_millis(600));
            vec![0u8; 32]
        })
        .await
    });

    // 4. A subscriber that proves its key and then never reads (a tiny HTTP/2 window).
    let lazy_key = PrivateKey::generate();
    let lazy_channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect()
        .await
        .expect("connect");
    let lazy = {
        use proto::subscribe_request::Step;
        let (steps, requests) = mpsc::channel(2);
        steps
            .send(proto::SubscribeRequest {
                step: Some(Step::Hello(proto::Hello {
                    public_key: Bytes::copy_from_slice(lazy_key.public_key().as_bytes()),
                    group: false,
                })),
            })
            .await
            .expect("hello");
        let mut stream = SignalingClient::new(lazy_channel)
            .subscribe(ReceiverStream::new(requests))
            .await
            .expect("subscribe")
            .into_inner();
        let Some(proto::SubscribeResponse {
            event: Some(proto::subscribe_response::Event::Challenge(challenge)),
        }) = stream.message().await.expect("challenge")
        else {
            panic!("expected a challenge");
        };
        let secret =
            wice_core::signaling::challenge::answer(&lazy_key, &challenge).expect("answer");
        steps
            .send(proto::SubscribeRequest {
                step: Some(Step::Answer(proto::ChallengeAnswer {
                    secret: secret.into(),
                })),
            })
            .await
            .expect("answer");
        (steps, stream)
    };
    let flood_key = PrivateKey::generate();
    let mut lazy_sealer = Sealer::new(&flood_key);
    let flood: Vec<_> = (0..400)
        .map(|i| {
            lazy_sealer
                .seal(
                    &lazy_key.public_key(),
                    &description(i, 0),
                    SystemTime::now(),
                    &mut OsRng,
                )
                .expect("seal")
        })
        .collect();
    let (flooder, _flood_inbox) = publisher_on(backend(), &flood_key).await;
    for chunk in flood.chunks(100) {
        flooder.publish(chunk.to_vec()).await.expect("publish");
    }

    // Meanwhile the well-formed clients are served.
    for round in 0..5 {
        alice.publish(&[bob.public()], &description(round, 0)).await;
        assert_eq!(session_id(&bob.next(WAIT).await.message), round);
    }

    let silent_result = silent.await.expect("task");
    assert_eq!(
        silent_result.expect_err("too slow").code(),
        Code::Unauthenticated
    );

    let counters = server.counters.snapshot();
    // 10 junk envelopes, the oversized batch, and the bodies that are not protobuf (random
    // bytes can happen to parse, so not all 20 need count).
    assert!(counters.rejected_malformed >= 11 + 15, "{counters}");
    // The 65 KiB envelope and the 4.8 MB request.
    assert_eq!(counters.rejected_oversized, 2, "{counters}");
    assert!(counters.auth_failed >= 1, "{counters}");
    assert!(
        counters.dropped_queue_full > 0,
        "the reader that never reads lost its oldest envelopes: {counters}"
    );

    // A newcomer is still welcome after all that.
    let mut carol = Peer::start(PrivateKey::generate(), vec![backend()]).await;
    alice.publish(&[carol.public()], &description(77, 0)).await;
    assert_eq!(session_id(&carol.next(WAIT).await.message), 77);

    drop((raw, stalled, lazy));
    let last = server.stop().await;
    assert!(last.accepted >= 406, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_over_the_rate_limit_is_refused_and_counted() {
    let server = RunningServer::start(ServerConfig {
        rate_per_second: 5,
        burst: 20,
        ..loopback_config()
    })
    .await;
    let publisher = PrivateKey::generate();
    let (backend, _inbox) = publisher_on(
        Arc::new(
            GrpcBackend::new(&loopback_url(server.addr.port(), false), quick_reconnect())
                .expect("backend"),
        ),
        &publisher,
    )
    .await;
    let mut sealer = Sealer::new(&publisher);
    let to = PrivateKey::generate().public_key();
    let batch = |sealer: &mut Sealer, n: u64| -> Vec<_> {
        (0..n)
            .map(|i| {
                sealer
                    .seal(&to, &description(i, 0), SystemTime::now(), &mut OsRng)
                    .expect("seal")
            })
            .collect()
    };
    backend
        .publish(batch(&mut sealer, 15))
        .await
        .expect("within the burst");
    let refused = backend
        .publish(batch(&mut sealer, 15))
        .await
        .expect_err("over the burst");
    assert!(
        matches!(refused, wice::signaling::BackendError::Refused { .. }),
        "{refused}"
    );
    let counters = server.counters.snapshot();
    assert_eq!((counters.accepted, counters.rate_limited), (15, 15));
    server.stop().await;
}
