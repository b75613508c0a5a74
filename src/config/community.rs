//! The `[community]` section and `[interface] derive_addresses`: discovery among the holders
//! of a passphrase, with tunnel addresses derived from public keys.
//!
//! ```toml
//! [interface]
//! derive_addresses = ["10.77.0.0/16", "fd77::/64"]   # our address in each, and members'
//!
//! [community]
//! passphrase_file = "/etc/wice/community"   # or passphrase = "..." (then the file must be 0600)
//! name = "alpha"                           # optional: our name in the community (DNS label)
//! allow = ["<base64 key>", ...]            # optional: accept only these keys
//! deny = ["<base64 key>", ...]             # optional: never accept these keys
//! announce_interval = 30                   # optional, seconds (default 30)
//! expire_after = 120                       # optional, seconds (default 120)
//! ```
//!
//! A community needs `[signaling]` backends (announcements travel through their group
//! delivery) and `derive_addresses` (members are routed by their derived addresses only).

use std::collections::HashSet;
use std::time::Duration;

use wice_core::addresses::check_prefix;
use wice_core::community::announcement::is_dns_label;
use wice_core::community::membership::{ANNOUNCE_INTERVAL, EXPIRE_AFTER};
use wice_core::community::{CommunityKey, CommunityKeyError};

use super::parser::{Parser, World, offline_file_error, read_bounded};
use super::values::parse_address;
use super::*;

/// Largest passphrase file read.
const MAX_PASSPHRASE_FILE_LEN: u64 = 4096;

/// The `[community]` section, validated; the key is derived at load.
#[derive(Debug, Clone)]
pub struct CommunityConfig {
    /// The community key, derived from the passphrase.
    pub key: CommunityKey,
    /// Our name in the community; empty when none is given.
    pub name: String,
    /// When set, only these keys are accepted.
    pub allow: Option<HashSet<PublicKey>>,
    /// Keys never accepted.
    pub deny: HashSet<PublicKey>,
    /// Time between our periodic announcements.
    pub announce_interval: Duration,
    /// Silence after which a member expires.
    pub expire_after: Duration,
}

/// The section as TOML gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawCommunity {
    pub(super) passphrase: Option<Spanned<String>>,
    pub(super) passphrase_file: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) allow: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) deny: Vec<Spanned<String>>,
    pub(super) announce_interval: Option<Spanned<i64>>,
    pub(super) expire_after: Option<Spanned<i64>>,
}

/// What is wrong in `[community]` or `derive_addresses`; follows `key: `.
#[derive(Debug, thiserror::Error)]
pub enum CommunityError {
    /// Neither `passphrase` nor `passphrase_file`.
    #[error("missing; give passphrase or passphrase_file")]
    MissingPassphrase,
    /// Both.
    #[error("given with passphrase on line {other_line}; give one")]
    PassphraseGivenTwice {
        /// Line of the other.
        other_line: usize,
    },
    /// The passphrase file cannot be read, or is not a regular file.
    #[error("cannot read {}: {error}", path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The passphrase file is readable by group or others.
    #[error("{} has mode {mode:o}; a passphrase file must not be readable by group or others (chmod 600)", path.display())]
    FileTooOpen {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The KDF refused the passphrase (empty).
    #[error("{0}")]
    Passphrase(CommunityKeyError),
    /// Not a DNS label.
    #[error("`{0}` is not a DNS label (1 to 63 of a-z, 0-9 and -, not at either end)")]
    InvalidName(String),
    /// `expire_after` not above `announce_interval`.
    #[error("{expire_after} s must be at least twice announce_interval ({announce_interval} s)")]
    ExpiryTooShort {
        /// Seconds.
        expire_after: u64,
        /// Seconds.
        announce_interval: u64,
    },
    /// `[community]` without `[signaling]` backends.
    #[error("a community needs [signaling] backends: announcements travel through them")]
    WithoutSignaling,
    /// `[community]` without `[interface] derive_addresses`.
    #[error("a community needs [interface] derive_addresses: members are routed by them")]
    WithoutDerivedAddresses,
    /// A prefix too small to derive addresses in.
    #[error("{0}")]
    Prefix(wice_core::addresses::AddressError),
}

impl Parser<'_> {
    fn community_error(
        &self,
        span: &Range<usize>,
        key: &str,
        error: CommunityError,
    ) -> ConfigError {
        self.error(span, key.to_owned(), ConfigErrorKind::Community(error))
    }

    /// Validates `derive_addresses`: prefixes with room for a host.
    pub(super) fn derive_prefixes(
        &self,
        raw: &[Spanned<String>],
    ) -> Result<Vec<IpNet>, ConfigError> {
        let mut prefixes = Vec::with_capacity(raw.len());
        for (index, text) in raw.iter().enumerate() {
            let key = format!("interface.derive_addresses[{index}]");
            let prefix = parse_address(text.get_ref())
                .map_err(|reason| self.error(&text.span(), key.clone(), reason))?
                .trunc();
            check_prefix(&prefix)
                .map_err(|e| self.community_error(&text.span(), &key, CommunityError::Prefix(e)))?;
            prefixes.push(prefix);
        }
        Ok(prefixes)
    }

    /// Validates `[community]` (and derives its key).
    pub(super) fn community(
        &self,
        raw: Spanned<RawCommunity>,
        signaling: &SignalingConfig,
        interface: &InterfaceConfig,
    ) -> Result<CommunityConfig, ConfigError> {
        let header = raw.span();
        let raw = raw.into_inner();
        if signaling.backends.is_empty() {
            return Err(self.community_error(
                &header,
                "community",
                CommunityError::WithoutSignaling,
            ));
        }
        if interface.derive_prefixes.is_empty() {
            return Err(self.community_error(
                &header,
                "community",
                CommunityError::WithoutDerivedAddresses,
            ));
        }
        let (passphrase, span, key) = match (raw.passphrase, raw.passphrase_file) {
            (Some(inline), Some(file)) => {
                return Err(self.community_error(
                    &file.span(),
                    "community.passphrase_file",
                    CommunityError::PassphraseGivenTwice {
                        other_line: self.line(&inline.span()),
                    },
                ));
            }
            (None, None) => {
                return Err(self.community_error(
                    &header,
                    "community.passphrase",
                    CommunityError::MissingPassphrase,
                ));
            }
            (Some(inline), None) => {
                let span = inline.span();
                (inline.into_inner(), span, "community.passphrase")
            }
            (None, Some(file)) => {
                let key = "community.passphrase_file";
                if file.get_ref().is_empty() {
                    return Err(self.error(
                        &file.span(),
                        key.to_owned(),
                        ConfigErrorKind::EmptyPath,
                    ));
                }
                let text = match self.world {
                    World::System => read_passphrase_file(&self.resolve(file.get_ref())),
                    World::Offline => Err(CommunityError::FileUnreadable {
                        path: self.resolve(file.get_ref()),
                        error: offline_file_error(),
                    }),
                }
                .map_err(|e| self.community_error(&file.span(), key, e))?;
                (text, file.span(), key)
            }
        };
        let community_key = CommunityKey::derive(&passphrase)
            .map_err(|e| self.community_error(&span, key, CommunityError::Passphrase(e)))?;

        let name = match raw.name {
            Some(name) if !is_dns_label(name.get_ref()) => {
                return Err(self.community_error(
                    &name.span(),
                    "community.name",
                    CommunityError::InvalidName(name.get_ref().clone()),
                ));
            }
            Some(name) => name.into_inner(),
            None => String::new(),
        };
        let keys = |list: &[Spanned<String>], field: &str| {
            list.iter()
                .enumerate()
                .map(|(index, text)| {
                    PublicKey::from_base64(text.get_ref()).map_err(|e| {
                        self.error(
                            &text.span(),
                            format!("community.{field}[{index}]"),
                            ConfigErrorKind::InvalidKey(e),
                        )
                    })
                })
                .collect::<Result<HashSet<_>, _>>()
        };
        let allow = raw
            .allow
            .as_deref()
            .map(|list| keys(list, "allow"))
            .transpose()?;
        let deny = keys(&raw.deny, "deny")?;
        let seconds = |value: &Option<Spanned<i64>>, key: &str, default: Duration| match value {
            Some(value) => self
                .in_range(value, key, 1, u16::MAX)
                .map(|s| Duration::from_secs(s.into())),
            None => Ok(default),
        };
        let announce_interval = seconds(
            &raw.announce_interval,
            "community.announce_interval",
            ANNOUNCE_INTERVAL,
        )?;
        let expire_after = seconds(&raw.expire_after, "community.expire_after", EXPIRE_AFTER)?;
        if expire_after < 2 * announce_interval {
            let span = raw
                .expire_after
                .as_ref()
                .or(raw.announce_interval.as_ref())
                .map_or(header.clone(), Spanned::span);
            return Err(self.community_error(
                &span,
                "community.expire_after",
                CommunityError::ExpiryTooShort {
                    expire_after: expire_after.as_secs(),
                    announce_interval: announce_interval.as_secs(),
                },
            ));
        }
        Ok(CommunityConfig {
            key: community_key,
            name,
            allow,
            deny,
            announce_interval,
            expire_after,
        })
    }
}

/// Reads a passphrase file with the private key's rules: a regular file, not readable by
/// group or others; the trailing newline is not part of the passphrase.
fn read_passphrase_file(path: &Path) -> Result<String, CommunityError> {
    let unreadable = |error| CommunityError::FileUnreadable {
        path: path.to_path_buf(),
        error,
    };
    let (text, mode) = read_bounded(path, MAX_PASSPHRASE_FILE_LEN).map_err(unreadable)?;
    if mode & 0o077 != 0 {
        return Err(CommunityError::FileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}
