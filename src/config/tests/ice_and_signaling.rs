use super::*;

// ---- ice ----

fn with_ice(ice: &str) -> String {
    with_interface(&format!("[signaling]\nbackends = [\"inprocess\"]\n{ice}"))
}

#[test]
fn the_webrtc_style_ice_servers_parse_with_credentials_on_turn_only() {
    let config = parse_ok(&with_ice(
        "[ice]\ncandidate_types = [\"host\", \"relay\"]\n\n\
         [[ice.servers]]\nurls = [\"stun:198.51.100.1:3478\"]\n\n\
         [[ice.servers]]\nurls = [\"turn:198.51.100.1?transport=udp\", \"stun:198.51.100.2\"]\n\
         username = \"lab\"\ncredential = \"labpass\"\n",
    ));
    let ice = &config.ice;
    assert_eq!(
        ice.candidate_types,
        CandidateTypes {
            host: true,
            srflx: false,
            relay: true
        }
    );
    let servers: Vec<(String, SocketAddr, bool)> = ice
        .servers
        .iter()
        .map(|s| (s.url.to_string(), s.address, s.credentials.is_some()))
        .collect();
    assert_eq!(
        servers,
        [
            (
                "stun:198.51.100.1:3478".to_owned(),
                "198.51.100.1:3478".parse().unwrap(),
                false
            ),
            (
                "turn:198.51.100.1:3478".to_owned(),
                "198.51.100.1:3478".parse().unwrap(),
                true
            ),
            (
                "stun:198.51.100.2:3478".to_owned(),
                "198.51.100.2:3478".parse().unwrap(),
                false
            ),
        ]
    );
    assert_eq!(ice.servers[1].credentials.as_ref().unwrap().username, "lab");
}

#[test]
fn without_an_ice_section_every_candidate_type_is_gathered_and_no_server_is_used() {
    let config = parse_ok(&with_ice(""));
    assert_eq!(config.ice, IceConfig::default());
    assert_eq!(config.ice.candidate_types, CandidateTypes::ALL);
}

#[test]
fn ice_mistakes_are_refused_with_their_place() {
    assert_error(
        &with_ice("[[ice.servers]]\nurls = [\"turn:198.51.100.1\"]\n"),
        Some(5),
        "ice.servers[0].username",
        "a turn: URL needs username and credential",
    );
    assert_error(
        &with_ice("[[ice.servers]]\nurls = [\"stun:198.51.100.1\"]\nusername = \"u\"\n"),
        Some(7),
        "ice.servers[0].username",
        "only used by turn: URLs",
    );
    assert_error(
        &with_ice("[[ice.servers]]\nurls = [\"turns:198.51.100.1\"]\n"),
        Some(6),
        "ice.servers[0].urls[0]",
        "TLS (stuns:/turns:) is not supported",
    );
    assert_error(
        &with_ice("[ice]\ncandidate_types = [\"host\", \"mdns\"]\n"),
        Some(6),
        "ice.candidate_types[1]",
        "`mdns` is not a candidate type",
    );
    assert_error(
        &with_ice("[ice]\ncandidate_types = []\n"),
        Some(6),
        "ice.candidate_types",
        "at least one of host, srflx, relay",
    );
    assert_error(
        &with_interface("[ice]\ncandidate_types = [\"host\"]\n"),
        Some(3),
        "ice",
        "[signaling] lists no backends",
    );
}

// ---- signaling ----

#[test]
fn signaling_backends_are_read_in_file_order() {
    let config = parse_ok(&with_interface(
        "[signaling]\nbackends = [\"grpc://198.51.100.1:8443\", \"inprocess\", \"grpcs://[2001:db8::1]:443\"]\n",
    ));
    assert_eq!(
        config.signaling.backends,
        vec![
            BackendUrl::Grpc {
                host: "198.51.100.1".to_owned(),
                port: 8443,
                tls: false
            },
            BackendUrl::InProcess,
            BackendUrl::Grpc {
                host: "2001:db8::1".to_owned(),
                port: 443,
                tls: true
            },
        ]
    );
    assert_eq!(config.signaling.tls_ca, None);
    assert!(
        config.check_summary().ends_with(
            ", signaling via grpc://198.51.100.1:8443, inprocess, grpcs://[2001:db8::1]:443"
        ),
        "{}",
        config.check_summary()
    );
}

#[test]
fn an_invalid_backend_url_is_refused_with_its_place_and_the_fix() {
    let text = with_interface(
        "[signaling]\nbackends = [\n  \"inprocess\",\n  \"http://198.51.100.1:8443\",\n]\n",
    );
    let err = assert_error(
        &text,
        Some(6),
        "signaling.backends[1]",
        "`http://198.51.100.1:8443` is not a backend; use \"grpc://host:port\"",
    );
    assert!(matches!(
        err.reason,
        ConfigErrorKind::InvalidBackend(BackendUrlError::UnknownScheme(_))
    ));
    assert_error(
        &with_interface("[signaling]\nbackends = [\"grpc://198.51.100.1\"]\n"),
        Some(4),
        "signaling.backends[0]",
        "needs a port from 1 to 65535",
    );
}

#[test]
fn a_libp2p_backend_is_read_and_a_bad_multiaddr_refused_with_its_place() {
    let config = parse_ok(&with_interface(
        "[signaling]\nbackends = [\"libp2p:/ip4/10.0.0.1/tcp/4001?listen=/ip4/0.0.0.0/tcp/4001\"]\n",
    ));
    assert_eq!(
        config.signaling.backends[0].to_string(),
        "libp2p:/ip4/10.0.0.1/tcp/4001?listen=/ip4/0.0.0.0/tcp/4001"
    );
    let err = assert_error(
        &with_interface("[signaling]\nbackends = [\"libp2p:/dns4/seed.example/tcp/4001\"]\n"),
        Some(4),
        "signaling.backends[0]",
        "`/dns4/`: use /ip4/ or /ip6/ with an address (no DNS names)",
    );
    assert!(matches!(
        err.reason,
        ConfigErrorKind::InvalidBackend(BackendUrlError::BadLibp2p(..))
    ));
}

#[test]
fn the_same_backend_listed_twice_is_refused() {
    let text = with_interface(
        "[signaling]\nbackends = [\"grpc://198.51.100.1:8443\",\n  \"grpc://198.51.100.1:8443\"]\n",
    );
    assert_error(
        &text,
        Some(5),
        "signaling.backends[1]",
        "same backend as signaling.backends[0] (line 4)",
    );
}

#[test]
fn an_unknown_key_in_the_signaling_section_is_refused() {
    let err = assert_error(
        &with_interface("[signaling]\nbackend = [\"inprocess\"]\n"),
        Some(4),
        "signaling.backend",
        "unknown key",
    );
    assert!(err.to_string().contains("backends"), "{err}");
}

#[test]
fn a_tls_ca_file_is_read_from_beside_the_config() {
    let dir = TempDir::new("ca-ok");
    dir.write(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        0o644,
    );
    let path = dir.write(
        "node.toml",
        &with_interface("[signaling]\nbackends = [\"grpcs://signal.example.org:443\"]\ntls_ca_file = \"ca.pem\"\n"),
        0o600,
    );
    let config = Config::load(&path).unwrap();
    let ca = config.signaling.tls_ca.unwrap();
    assert_eq!(ca.path, dir.0.join("ca.pem"));
    assert!(ca.pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    // The WebSocket transport over TLS takes it too.
    let path = dir.write(
        "wss.toml",
        &with_interface(
            "[signaling]\nbackends = [\"wss://signal.example.org\"]\ntls_ca_file = \"ca.pem\"\n",
        ),
        0o600,
    );
    assert!(Config::load(&path).unwrap().signaling.tls_ca.is_some());
}

#[test]
fn a_tls_ca_file_that_is_missing_or_not_a_certificate_is_refused() {
    let dir = TempDir::new("ca-bad");
    let missing = dir.0.join("absent.pem");
    let text = |file: &Path| {
        with_interface(&format!(
            "[signaling]\nbackends = [\"grpcs://signal.example.org:443\"]\ntls_ca_file = \"{}\"\n",
            file.display()
        ))
    };
    assert_error(
        &text(&missing),
        Some(5),
        "signaling.tls_ca_file",
        &format!("cannot read {}", missing.display()),
    );
    let garbage = dir.write("garbage.pem", "hello\n", 0o644);
    assert_error(
        &text(&garbage),
        Some(5),
        "signaling.tls_ca_file",
        "holds no PEM certificate",
    );
}

#[test]
fn a_tls_ca_file_without_a_grpcs_backend_is_refused_as_unused() {
    assert_error(
        &with_interface(
            "[signaling]\nbackends = [\"grpc://198.51.100.1:8443\"]\ntls_ca_file = \"ca.pem\"\n",
        ),
        Some(5),
        "signaling.tls_ca_file",
        "no backend uses grpcs:// or wss://",
    );
}
