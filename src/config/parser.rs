//! One parse of one file: from raw TOML to a validated [`Config`].

use super::raw::*;
use super::span::*;
use super::values::*;
use super::*;

/// One parse of one file: holds what every error needs to say where it is.
pub(super) struct Parser<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) world: World,
}

/// Largest config file read: far above any real mesh, small enough that pointing `-c` at a
/// device or a huge file fails at once instead of filling memory.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Reads at most `max` bytes of a regular file as UTF-8, with its permission bits, from one
/// open file. Refuses what is not a regular file (a FIFO or device could block or never
/// end) and a longer file.
pub(super) fn read_bounded(path: &Path, max: u64) -> io::Result<(String, u32)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok((text, metadata.permissions().mode() & 0o7777))
}

/// What a parse may touch besides the text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum World {
    /// Resolve host names and read the files the config names.
    System,
    /// Neither: see [`Config::parse_offline`].
    Offline,
}

/// The error an offline parse gives where it would have read a file.
pub(super) fn offline_file_error() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not read: parsing offline")
}

impl World {
    /// The first address of `host`, as the resolver orders them (RFC 6724), as `wg` uses.
    pub(super) fn lookup(self, host: &str, port: u16) -> Result<SocketAddr, String> {
        match self {
            Self::System => (host, port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or_else(|| "no addresses found".to_owned()),
            Self::Offline => Err("not resolved: parsing offline".to_owned()),
        }
    }

    pub(super) fn read_private_key_file(self, path: &Path) -> Result<PrivateKey, ConfigErrorKind> {
        match self {
            Self::System => read_private_key_file(path),
            Self::Offline => Err(ConfigErrorKind::KeyFileUnreadable {
                path: path.to_path_buf(),
                error: offline_file_error(),
            }),
        }
    }

    pub(super) fn read_ca_file(self, path: &Path) -> Result<Vec<u8>, ConfigErrorKind> {
        match self {
            Self::System => read_ca_file(path),
            Self::Offline => Err(ConfigErrorKind::CaFileUnreadable {
                path: path.to_path_buf(),
                error: offline_file_error(),
            }),
        }
    }
}

impl Parser<'_> {
    /// The key path and place of the first secret written inline in the text, if any.
    pub(super) fn first_inline_secret(&self) -> Option<(String, Range<usize>)> {
        let raw: RawConfig = toml::from_str(self.text).ok()?;
        if let Some(key) = raw.interface.and_then(|i| i.into_inner().private_key) {
            return Some(("interface.private_key".to_owned(), key.span()));
        }
        for (index, peer) in raw.peer.into_iter().enumerate() {
            if let Some(psk) = peer.into_inner().preshared_key {
                return Some((format!("peer[{index}].preshared_key"), psk.span()));
            }
        }
        let servers = raw
            .ice
            .map(|ice| ice.into_inner().servers)
            .unwrap_or_default();
        for (index, server) in servers.into_iter().enumerate() {
            if let Some(credential) = server.into_inner().credential {
                return Some((
                    format!("ice.servers[{index}].credential"),
                    credential.span(),
                ));
            }
        }
        None
    }

    pub(super) fn error(
        &self,
        span: &Range<usize>,
        key: String,
        reason: ConfigErrorKind,
    ) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: Some(line_of(self.text, span.start)),
            key,
            reason,
        }
    }

    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    /// Resolves a path from the file against the file's directory (see the module docs).
    pub(super) fn resolve(&self, value: &str) -> PathBuf {
        let value = Path::new(value);
        match self.path.parent() {
            Some(dir) if value.is_relative() => dir.join(value),
            _ => value.to_path_buf(),
        }
    }

    pub(super) fn parse(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| self.toml_error(&e))?;
        let Some(raw_interface) = raw.interface else {
            return Err(ConfigError {
                file: self.path.to_path_buf(),
                line: None,
                key: "interface".to_owned(),
                reason: ConfigErrorKind::MissingInterface,
            });
        };
        let interface = self.interface(raw_interface)?;
        let own_key = interface.private_key.public_key();

        let mut peers = Vec::with_capacity(raw.peer.len());
        // Public key → (peer index, line), to report a repeat with the first place it appeared.
        let mut seen: HashMap<PublicKey, (usize, usize)> = HashMap::new();
        // For the overlap check: every peer's prefixes with their spans.
        let mut prefixes: Vec<Vec<(IpNet, Range<usize>)>> = Vec::with_capacity(raw.peer.len());
        for (index, raw_peer) in raw.peer.into_iter().enumerate() {
            let (peer, spans) = self.peer(index, raw_peer, &own_key, &mut seen)?;
            self.check_overlaps(index, &peer.allowed_ips, &spans, &prefixes)?;
            prefixes.push(peer.allowed_ips.iter().copied().zip(spans).collect());
            peers.push(peer);
        }

        let signaling = match raw.signaling {
            Some(raw_signaling) => self.signaling(raw_signaling.into_inner())?,
            None => SignalingConfig::default(),
        };

        let ice = match raw.ice {
            Some(raw_ice) => {
                if signaling.backends.is_empty() {
                    return Err(self.error(
                        &raw_ice.span(),
                        "ice".to_owned(),
                        ConfigErrorKind::IceWithoutSignaling,
                    ));
                }
                self.ice(raw_ice.into_inner())?
            }
            None => IceConfig::default(),
        };

        Ok(Config {
            path: self.path.to_path_buf(),
            interface,
            peers,
            signaling,
            ice,
        })
    }

    pub(super) fn ice(&self, raw: RawIce) -> Result<IceConfig, ConfigError> {
        let mut servers = Vec::new();
        for (index, raw_server) in raw.servers.into_iter().enumerate() {
            let span = raw_server.span();
            let raw_server = raw_server.into_inner();
            let key = |field: &str| format!("ice.servers[{index}].{field}");
            if raw_server.urls.is_empty() {
                return Err(self.error(&span, key("urls"), ConfigErrorKind::MissingUrls));
            }
            let mut parsed = Vec::with_capacity(raw_server.urls.len());
            for (n, text) in raw_server.urls.iter().enumerate() {
                let url_key = format!("ice.servers[{index}].urls[{n}]");
                let url = ServerUrl::parse(text.get_ref()).map_err(|e| {
                    self.error(
                        &text.span(),
                        url_key.clone(),
                        ConfigErrorKind::InvalidServerUrl(e),
                    )
                })?;
                let address = resolve_server(&url, self.world)
                    .map_err(|reason| self.error(&text.span(), url_key, reason))?;
                parsed.push((url, address));
            }
            let wants_turn = parsed
                .iter()
                .any(|(url, _)| url.scheme == ServerScheme::Turn);
            let credentials = match (&raw_server.username, &raw_server.credential) {
                (Some(username), Some(credential)) if wants_turn => Some(TurnCredentials {
                    username: username.get_ref().clone(),
                    credential: SecretString::new(credential.get_ref().as_str()),
                }),
                (None, _) | (_, None) if wants_turn => {
                    let field = if raw_server.username.is_none() {
                        "username"
                    } else {
                        "credential"
                    };
                    return Err(self.error(
                        &span,
                        key(field),
                        ConfigErrorKind::MissingTurnCredentials,
                    ));
                }
                (Some(given), _) | (None, Some(given)) => {
                    let field = if raw_server.username.is_some() {
                        "username"
                    } else {
                        "credential"
                    };
                    return Err(self.error(
                        &given.span(),
                        key(field),
                        ConfigErrorKind::UnusedCredentials,
                    ));
                }
                (None, None) => None,
            };
            for (url, address) in parsed {
                let credentials = match url.scheme {
                    ServerScheme::Turn => credentials.clone(),
                    ServerScheme::Stun => None,
                };
                servers.push(IceServer {
                    url,
                    address,
                    credentials,
                });
            }
        }
        let candidate_types = match raw.candidate_types {
            None => CandidateTypes::ALL,
            Some(list) => {
                let span = list.span();
                let list = list.into_inner();
                if list.is_empty() {
                    return Err(self.error(
                        &span,
                        "ice.candidate_types".to_owned(),
                        ConfigErrorKind::NoCandidateTypes,
                    ));
                }
                let mut types = CandidateTypes {
                    host: false,
                    srflx: false,
                    relay: false,
                };
                for (n, name) in list.iter().enumerate() {
                    match name.get_ref().as_str() {
                        "host" => types.host = true,
                        "srflx" => types.srflx = true,
                        "relay" => types.relay = true,
                        other => {
                            return Err(self.error(
                                &name.span(),
                                format!("ice.candidate_types[{n}]"),
                                ConfigErrorKind::UnknownCandidateType(other.to_owned()),
                            ));
                        }
                    }
                }
                types
            }
        };
        Ok(IceConfig {
            servers,
            candidate_types,
        })
    }

    pub(super) fn signaling(&self, raw: RawSignaling) -> Result<SignalingConfig, ConfigError> {
        let mut backends: Vec<BackendUrl> = Vec::with_capacity(raw.backends.len());
        let mut lines = Vec::with_capacity(raw.backends.len());
        for (index, text) in raw.backends.iter().enumerate() {
            let key = format!("signaling.backends[{index}]");
            let url = BackendUrl::parse(text.get_ref()).map_err(|e| {
                self.error(
                    &text.span(),
                    key.clone(),
                    ConfigErrorKind::InvalidBackend(e),
                )
            })?;
            if let Some(first) = backends.iter().position(|other| *other == url) {
                return Err(self.error(
                    &text.span(),
                    key,
                    ConfigErrorKind::DuplicateBackend {
                        first,
                        first_line: lines[first],
                    },
                ));
            }
            lines.push(self.line(&text.span()));
            backends.push(url);
        }
        let tls_ca = match raw.tls_ca_file {
            Some(file) => {
                let key = "signaling.tls_ca_file".to_owned();
                if file.get_ref().is_empty() {
                    return Err(self.error(&file.span(), key, ConfigErrorKind::EmptyPath));
                }
                let uses_tls = backends
                    .iter()
                    .any(|b| matches!(b, BackendUrl::Grpc { tls: true, .. }));
                if !uses_tls {
                    return Err(self.error(&file.span(), key, ConfigErrorKind::CaFileUnused));
                }
                let path = self.resolve(file.get_ref());
                let pem = self
                    .world
                    .read_ca_file(&path)
                    .map_err(|reason| self.error(&file.span(), key, reason))?;
                Some(CaCertificate { path, pem })
            }
            None => None,
        };
        Ok(SignalingConfig { backends, tls_ca })
    }

    pub(super) fn interface(
        &self,
        raw: Spanned<RawInterface>,
    ) -> Result<InterfaceConfig, ConfigError> {
        let header = raw.span();
        let raw = raw.into_inner();

        let name = match raw.name {
            Some(name) => {
                validate_interface_name(name.get_ref()).map_err(|why| {
                    self.error(
                        &name.span(),
                        "interface.name".to_owned(),
                        ConfigErrorKind::InvalidInterfaceName {
                            value: name.get_ref().clone(),
                            why,
                        },
                    )
                })?;
                name.into_inner()
            }
            None => DEFAULT_INTERFACE_NAME.to_owned(),
        };

        let private_key = match (raw.private_key, raw.private_key_file) {
            (Some(inline), Some(file)) => {
                return Err(self.error(
                    &file.span(),
                    "interface.private_key_file".to_owned(),
                    ConfigErrorKind::PrivateKeyGivenTwice {
                        other_line: self.line(&inline.span()),
                    },
                ));
            }
            (None, None) => {
                return Err(self.error(
                    &header,
                    "interface.private_key".to_owned(),
                    ConfigErrorKind::MissingPrivateKey,
                ));
            }
            (Some(inline), None) => PrivateKey::from_base64(inline.get_ref()).map_err(|e| {
                self.error(
                    &inline.span(),
                    "interface.private_key".to_owned(),
                    ConfigErrorKind::InvalidKey(e),
                )
            })?,
            (None, Some(file)) => {
                let key = "interface.private_key_file".to_owned();
                if file.get_ref().is_empty() {
                    return Err(self.error(&file.span(), key, ConfigErrorKind::EmptyPath));
                }
                self.world
                    .read_private_key_file(&self.resolve(file.get_ref()))
                    .map_err(|reason| self.error(&file.span(), key, reason))?
            }
        };

        let listen_port = match raw.listen_port {
            Some(port) => self.in_range(&port, "interface.listen_port", 0, u16::MAX)?,
            None => DEFAULT_LISTEN_PORT,
        };

        let mut addresses = Vec::with_capacity(raw.addresses.len());
        for (index, address) in raw.addresses.iter().enumerate() {
            let parsed = parse_address(address.get_ref()).map_err(|reason| {
                self.error(
                    &address.span(),
                    format!("interface.addresses[{index}]"),
                    reason,
                )
            })?;
            addresses.push(parsed);
        }

        let mtu = match raw.mtu {
            Some(mtu) => {
                let key = "interface.mtu";
                let value = self.in_range(&mtu, key, MIN_MTU_IPV4, u16::MAX)?;
                let first_v6 = addresses.iter().find(|a| matches!(a, IpNet::V6(_)));
                if let Some(&address) = first_v6
                    && value < MIN_MTU_IPV6
                {
                    return Err(self.error(
                        &mtu.span(),
                        key.to_owned(),
                        ConfigErrorKind::MtuTooSmallForIpv6 {
                            mtu: value,
                            address,
                        },
                    ));
                }
                value
            }
            None => DEFAULT_MTU,
        };

        let control_socket = match raw.control_socket {
            Some(socket) if socket.get_ref().is_empty() => {
                return Err(self.error(
                    &socket.span(),
                    "interface.control_socket".to_owned(),
                    ConfigErrorKind::EmptyPath,
                ));
            }
            Some(socket) => self.resolve(socket.get_ref()),
            None => PathBuf::from(format!("/run/wice/{name}.sock")),
        };

        let metrics_listen = match raw.metrics_listen {
            Some(text) => Some(text.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.error(
                    &text.span(),
                    "interface.metrics_listen".to_owned(),
                    ConfigErrorKind::InvalidEndpoint {
                        value: text.get_ref().clone(),
                        why: "expected ip:port, like 127.0.0.1:9586 or [::1]:9586",
                    },
                )
            })?),
            None => None,
        };

        Ok(InterfaceConfig {
            name,
            private_key,
            listen_port,
            addresses,
            mtu,
            control_socket,
            metrics_listen,
        })
    }

    /// Validates one peer; also returns the span of each allowed IP for the overlap check.
    pub(super) fn peer(
        &self,
        index: usize,
        raw: Spanned<RawPeer>,
        own_key: &PublicKey,
        seen: &mut HashMap<PublicKey, (usize, usize)>,
    ) -> Result<(PeerConfig, Vec<Range<usize>>), ConfigError> {
        let header = raw.span();
        let raw = raw.into_inner();
        let key = |field: &str| format!("peer[{index}].{field}");

        let Some(raw_key) = raw.public_key else {
            return Err(self.error(
                &header,
                key("public_key"),
                ConfigErrorKind::MissingPublicKey,
            ));
        };
        let key_error = |reason| self.error(&raw_key.span(), key("public_key"), reason);
        let public_key = PublicKey::from_base64(raw_key.get_ref())
            .map_err(|e| key_error(ConfigErrorKind::InvalidKey(e)))?;
        if public_key == *own_key {
            return Err(key_error(ConfigErrorKind::OwnPublicKey));
        }
        let line = self.line(&raw_key.span());
        if let Some(&(first, first_line)) = seen.get(&public_key) {
            return Err(key_error(ConfigErrorKind::DuplicatePeer {
                first,
                first_line,
            }));
        }
        seen.insert(public_key, (index, line));

        let mut allowed_ips = Vec::with_capacity(raw.allowed_ips.len());
        let mut spans = Vec::with_capacity(raw.allowed_ips.len());
        for (i, prefix) in raw.allowed_ips.iter().enumerate() {
            let parsed = parse_allowed_ip(prefix.get_ref()).map_err(|reason| {
                self.error(&prefix.span(), key(&format!("allowed_ips[{i}]")), reason)
            })?;
            allowed_ips.push(parsed);
            spans.push(prefix.span());
        }

        let endpoint = match raw.endpoint {
            Some(endpoint) => Some(
                resolve_endpoint(endpoint.get_ref(), self.world)
                    .map_err(|reason| self.error(&endpoint.span(), key("endpoint"), reason))?,
            ),
            None => None,
        };

        let persistent_keepalive = match raw.persistent_keepalive {
            Some(seconds) => {
                match self.in_range(&seconds, &key("persistent_keepalive"), 0, u16::MAX)? {
                    0 => None,
                    seconds => Some(seconds),
                }
            }
            None => None,
        };

        let preshared_key = match raw.preshared_key {
            Some(psk) => Some(PresharedKey::from_base64(psk.get_ref()).map_err(|e| {
                self.error(
                    &psk.span(),
                    key("preshared_key"),
                    ConfigErrorKind::InvalidKey(e),
                )
            })?),
            None => None,
        };

        let peer = PeerConfig {
            public_key,
            allowed_ips,
            endpoint,
            persistent_keepalive,
            preshared_key,
        };
        Ok((peer, spans))
    }

    /// Refuses a prefix of peer `index` that intersects a prefix of an earlier peer: routing
    /// by longest match would silently steal part of the other peer's range.
    pub(super) fn check_overlaps(
        &self,
        index: usize,
        allowed_ips: &[IpNet],
        spans: &[Range<usize>],
        earlier: &[Vec<(IpNet, Range<usize>)>],
    ) -> Result<(), ConfigError> {
        for (i, (prefix, span)) in allowed_ips.iter().zip(spans).enumerate() {
            for (other_peer, others) in earlier.iter().enumerate() {
                for (other_prefix, other_span) in others {
                    // Prefixes are aligned, so they intersect exactly when one holds the other.
                    if prefix.contains(other_prefix) || other_prefix.contains(prefix) {
                        return Err(self.error(
                            span,
                            format!("peer[{index}].allowed_ips[{i}]"),
                            ConfigErrorKind::OverlappingAllowedIps {
                                prefix: *prefix,
                                other_peer,
                                other_prefix: *other_prefix,
                                other_line: self.line(other_span),
                            },
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn in_range(
        &self,
        value: &Spanned<i64>,
        key: &str,
        min: u16,
        max: u16,
    ) -> Result<u16, ConfigError> {
        u16::try_from(*value.get_ref())
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                self.error(
                    &value.span(),
                    key.to_owned(),
                    ConfigErrorKind::OutOfRange {
                        value: *value.get_ref(),
                        min: min.into(),
                        max: max.into(),
                    },
                )
            })
    }

    /// Turns the TOML parser's error (syntax, wrong type, unknown key) into ours, naming the
    /// key by finding which key or value its span falls in.
    pub(super) fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span();
        let message = error.message().trim_end();
        let key = match &span {
            // A duplicate key makes the text unparsable, so the path cannot be looked up; the
            // span holds the repeated key's name, which with the line is enough to find it.
            Some(span) if message == "duplicate key" => self
                .text
                .get(span.clone())
                .unwrap_or_default()
                .trim()
                .to_owned(),
            Some(span) => key_path_at(self.text, span.start).unwrap_or_default(),
            None => String::new(),
        };
        let reason = match message.strip_prefix("unknown field `") {
            Some(rest) => ConfigErrorKind::UnknownKey {
                expected: rest
                    .split_once("`, ")
                    .map(|(_, expected)| expected.to_owned()),
            },
            // Say TOML's words rather than the Rust types serde reports.
            None => ConfigErrorKind::InvalidToml(
                message
                    .replace("expected i64", "expected an integer")
                    .replace("expected a sequence", "expected an array"),
            ),
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line: span.map(|span| line_of(self.text, span.start)),
            key,
            reason,
        }
    }
}
