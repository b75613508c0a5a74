//! Names in the hosts file and hooks on peer events:
//!
//! ```toml
//! [interface]
//! hosts_file = true              # default false: keep a block of peer names in /etc/hosts
//! hosts_file_path = "/etc/hosts" # default /etc/hosts
//! domain = "mesh"                # optional: also name.mesh for every peer
//!
//! [[peer]]
//! name = "alice"                 # optional; one DNS label
//!
//! [[hook]]
//! run = "/etc/wice/on-peer"      # an absolute path
//! events = ["connected", "disconnected"]  # default: added, removed, connected,
//!                                         # disconnected, path_changed
//! timeout = "10s"                # default 10s; "500ms", "2m" also work
//! ```

use std::time::Duration;

use super::raw::{RawHook, RawInterface};
use super::*;
use crate::hooks::{DEFAULT_TIMEOUT, EventKind, HookConfig};
use crate::hosts_file::{DEFAULT_PATH, NameError, validate_domain, validate_label};

/// `[[hook]]` entries at most: each event runs every hook one after another.
pub const MAX_HOOKS: usize = 16;
/// The longest hook timeout accepted.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

/// The hosts file block, when `hosts_file = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// The file (default `/etc/hosts`).
    pub path: PathBuf,
    /// `name.<domain>` aliases, when set.
    pub domain: Option<String>,
}

/// What can be wrong in these sections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamesHooksError {
    /// A peer name or domain that is not DNS-safe.
    #[error("`{value}` is not a valid name: {why}")]
    InvalidName {
        /// As written.
        value: String,
        /// Why.
        why: NameError,
    },
    /// Two peers with one name.
    #[error("`{name}` is already the name of peer[{first}] (line {first_line})")]
    DuplicateName {
        /// The name.
        name: String,
        /// The first peer with it.
        first: usize,
        /// Its line.
        first_line: usize,
    },
    /// `hosts_file_path` or `domain` without `hosts_file = true`.
    #[error("is set but hosts_file is not true, so no hosts file is written")]
    HostsFileOff,
    /// A hook's `run` that is not an absolute path.
    #[error("`{0}` is not an absolute path")]
    RelativeHook(String),
    /// An event name that does not exist.
    #[error("`{0}` is not an event; use added, removed, connected, disconnected or path_changed")]
    UnknownEvent(String),
    /// An empty `events` list.
    #[error("lists no events; leave it out for all of them")]
    NoEvents,
    /// A timeout that does not parse or is out of range.
    #[error("`{0}` is not a timeout between 1ms and 1h, like \"10s\", \"500ms\" or \"2m\"")]
    InvalidTimeout(String),
    /// A `[[hook]]` without `run`.
    #[error("missing; every [[hook]] needs run = \"/path/to/executable\"")]
    MissingRun,
    /// Too many hooks.
    #[error("more than {MAX_HOOKS} hooks")]
    TooManyHooks,
}

/// `10s`, `500ms`, `2m`: a number and a unit.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        _ => return None,
    };
    (!duration.is_zero() && duration <= MAX_HOOK_TIMEOUT).then_some(duration)
}

impl Parser<'_> {
    fn names_error(&self, span: &Range<usize>, key: String, why: NamesHooksError) -> ConfigError {
        self.error(span, key, ConfigErrorKind::NamesHooks(why))
    }

    /// The hosts-file settings of `[interface]`.
    pub(super) fn hosts(&self, raw: &RawInterface) -> Result<Option<HostsConfig>, ConfigError> {
        let enabled = raw.hosts_file.as_ref().is_some_and(|on| *on.get_ref());
        if !enabled {
            let stray = [
                raw.hosts_file_path
                    .as_ref()
                    .map(|p| ("hosts_file_path", p.span())),
                raw.domain.as_ref().map(|d| ("domain", d.span())),
            ];
            if let Some((key, span)) = stray.into_iter().flatten().next() {
                let key = format!("interface.{key}");
                return Err(self.names_error(&span, key, NamesHooksError::HostsFileOff));
            }
            return Ok(None);
        }
        let path = match &raw.hosts_file_path {
            Some(path) if path.get_ref().is_empty() => {
                let key = "interface.hosts_file_path".to_owned();
                return Err(self.error(&path.span(), key, ConfigErrorKind::EmptyPath));
            }
            Some(path) => self.resolve(path.get_ref()),
            None => PathBuf::from(DEFAULT_PATH),
        };
        let domain = match &raw.domain {
            Some(domain) => {
                validate_domain(domain.get_ref()).map_err(|why| {
                    self.names_error(
                        &domain.span(),
                        "interface.domain".to_owned(),
                        NamesHooksError::InvalidName {
                            value: domain.get_ref().clone(),
                            why,
                        },
                    )
                })?;
                Some(domain.get_ref().to_ascii_lowercase())
            }
            None => None,
        };
        Ok(Some(HostsConfig { path, domain }))
    }

    /// A peer's `name`, checked against the names before it (`seen`: lowercased name →
    /// peer index and line).
    pub(super) fn peer_name(
        &self,
        index: usize,
        name: Option<Spanned<String>>,
        seen: &mut HashMap<String, (usize, usize)>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(name) = name else { return Ok(None) };
        let (span, value) = (name.span(), name.into_inner());
        let key = format!("peer[{index}].name");
        validate_label(&value).map_err(|why| {
            self.names_error(
                &span,
                key.clone(),
                NamesHooksError::InvalidName {
                    value: value.clone(),
                    why,
                },
            )
        })?;
        let lower = value.to_ascii_lowercase();
        if let Some(&(first, first_line)) = seen.get(&lower) {
            let why = NamesHooksError::DuplicateName {
                name: value,
                first,
                first_line,
            };
            return Err(self.names_error(&span, key, why));
        }
        seen.insert(lower.clone(), (index, self.line(&span)));
        Ok(Some(lower))
    }

    /// The `[[hook]]` entries.
    pub(super) fn hooks(&self, raw: Vec<Spanned<RawHook>>) -> Result<Vec<HookConfig>, ConfigError> {
        if let Some(extra) = raw.get(MAX_HOOKS) {
            let key = format!("hook[{MAX_HOOKS}]");
            return Err(self.names_error(&extra.span(), key, NamesHooksError::TooManyHooks));
        }
        let mut hooks = Vec::with_capacity(raw.len());
        for (index, raw_hook) in raw.into_iter().enumerate() {
            let header = raw_hook.span();
            let raw_hook = raw_hook.into_inner();
            let key = |field: &str| format!("hook[{index}].{field}");
            let Some(run) = raw_hook.run else {
                return Err(self.names_error(&header, key("run"), NamesHooksError::MissingRun));
            };
            if !Path::new(run.get_ref()).is_absolute() {
                let why = NamesHooksError::RelativeHook(run.get_ref().clone());
                return Err(self.names_error(&run.span(), key("run"), why));
            }
            let events = match raw_hook.events {
                None => EventKind::ALL.to_vec(),
                Some(list) if list.get_ref().is_empty() => {
                    return Err(self.names_error(
                        &list.span(),
                        key("events"),
                        NamesHooksError::NoEvents,
                    ));
                }
                Some(list) => {
                    let mut events = Vec::new();
                    for (n, name) in list.into_inner().into_iter().enumerate() {
                        let Some(kind) = EventKind::from_name(name.get_ref()) else {
                            let why = NamesHooksError::UnknownEvent(name.get_ref().clone());
                            let at = format!("hook[{index}].events[{n}]");
                            return Err(self.names_error(&name.span(), at, why));
                        };
                        if !events.contains(&kind) {
                            events.push(kind);
                        }
                    }
                    events
                }
            };
            let timeout = match raw_hook.timeout {
                None => DEFAULT_TIMEOUT,
                Some(text) => parse_timeout(text.get_ref()).ok_or_else(|| {
                    let why = NamesHooksError::InvalidTimeout(text.get_ref().clone());
                    self.names_error(&text.span(), key("timeout"), why)
                })?,
            };
            hooks.push(HookConfig {
                run: PathBuf::from(run.into_inner()),
                events,
                timeout,
            });
        }
        Ok(hooks)
    }
}
