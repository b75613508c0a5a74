//! Peer names in the hosts file: one block per interface, tagged with its name,
//!
//! ```text
//! # BEGIN wice wg0
//! 10.77.0.2 alice alice.mesh
//! fd77::2 alice alice.mesh
//! # END wice wg0
//! ```
//!
//! rewritten whenever the peers change, removed on shutdown and, after a crash, on the next
//! start. Every line outside the block is kept byte for byte.
//!
//! Names are hostile input (a community member announces its own): each must be one DNS
//! label, the number of names and addresses is capped, a name two peers claim is left out for
//! both (neither gets the other's traffic), and a name the file already maps outside our
//! block (`localhost`, the host's own name) is never shadowed.
//!
//! Writing: a temporary file in the same directory with the old file's mode and owner, then
//! `rename` over it, so a reader sees the old file or the new one. Where `rename` cannot
//! replace the file (`/etc/hosts` bind-mounted into a container: `EBUSY`, or `EXDEV`) the file
//! is rewritten in place instead, which a reader can catch half-written. Concurrent wice
//! processes (one per interface) serialise their read-modify-write with an advisory lock
//! on the file's directory.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// Where names go unless the config says otherwise.
pub const DEFAULT_PATH: &str = "/etc/hosts";
/// Names written per interface at most; peers beyond it are left out (counted).
pub const MAX_NAMES: usize = 1024;
/// Addresses per name at most (a derived /32 and /128 plus a few configured ones).
pub const MAX_ADDRESSES_PER_NAME: usize = 8;
/// A DNS label's limit (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// A full name's limit (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// A hosts file larger than this is not read (nor rewritten): something else is wrong.
const MAX_FILE_LEN: u64 = 16 << 20;

/// Why a name or domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty, or an empty label (`a..b`).
    #[error("empty label")]
    Empty,
    /// A label over 63 bytes or a name over 253.
    #[error("longer than {0} characters")]
    TooLong(usize),
    /// Anything but ASCII letters, digits and `-`.
    #[error("character {0:?} is not allowed (only letters, digits and '-')")]
    BadCharacter(char),
    /// A label starting or ending with `-`.
    #[error("a label may not start or end with '-'")]
    HyphenAtEdge,
    /// All digits: a resolver would read it as an address.
    #[error("an all-digit label reads as an address")]
    AllDigits,
}

/// Checks one DNS label: 1–63 letters, digits and inner hyphens, not all digits.
pub fn validate_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::Empty);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong(MAX_LABEL_LEN));
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
    {
        return Err(NameError::BadCharacter(bad));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::HyphenAtEdge);
    }
    if label.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::AllDigits);
    }
    Ok(())
}

/// Checks a domain (`mesh`, `vpn.example.com`): dot-separated labels, at most 253 bytes
/// together. A trailing dot is refused (hosts files hold relative names).
pub fn validate_domain(domain: &str) -> Result<(), NameError> {
    if domain.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(MAX_NAME_LEN));
    }
    domain.split('.').try_for_each(validate_label)
}

/// A peer's tunnel addresses as the hosts file lists them: the host routes (/32, /128)
/// among its allowed IPs, in order, without duplicates.
pub fn tunnel_addresses<'a>(allowed_ips: impl IntoIterator<Item = &'a IpNet>) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for net in allowed_ips {
        if net.prefix_len() == net.max_prefix_len() && !addresses.contains(&net.addr()) {
            addresses.push(net.addr());
        }
    }
    addresses
}

/// One peer's name and addresses, as the daemon knows them (unchecked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The peer's name: one DNS label.
    pub name: String,
    /// Its tunnel addresses.
    pub addresses: Vec<IpAddr>,
}

/// What a write left out, so the caller can log one line about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Omitted {
    /// Names that are not a valid DNS label (or too long with the domain).
    pub invalid: usize,
    /// Names two or more peers claim (each claimant counted).
    pub duplicate: usize,
    /// Names the file already maps outside our block.
    pub taken: usize,
    /// Names beyond [`MAX_NAMES`], or peers without a tunnel address.
    pub over_limit: usize,
    /// Addresses beyond [`MAX_ADDRESSES_PER_NAME`].
    pub addresses_over_limit: usize,
}

impl Omitted {
    /// Whether nothing was left out.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The block's first line for `interface`.
fn begin_marker(interface: &str) -> String {
    format!("# BEGIN wice {interface}")
}

/// The block's last line for `interface`.
fn end_marker(interface: &str) -> String {
    format!("# END wice {interface}")
}

/// The names every non-comment line outside any wice block maps, lowercased: ours must not
/// shadow them.
fn names_outside_blocks(text: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.starts_with("# BEGIN wice ") {
            in_block = true;
        } else if line.starts_with("# END wice ") {
            in_block = false;
        } else if !in_block {
            let data = line.split('#').next().unwrap_or("");
            names.extend(data.split_whitespace().skip(1).map(str::to_ascii_lowercase));
        }
    }
    names
}

/// The block for `interface` (empty string when there is nothing to name), from `entries`,
/// leaving out what [`Omitted`] lists. `outside` holds the names mapped elsewhere in the file.
pub fn render_block(
    interface: &str,
    domain: Option<&str>,
    entries: &[HostEntry],
    outside: &HashSet<String>,
) -> (String, Omitted) {
    let mut omitted = Omitted::default();
    // Lowercased name → addresses; `None` once a second peer claims it.
    let mut by_name: BTreeMap<String, Option<&[IpAddr]>> = BTreeMap::new();
    for entry in entries {
        let name = entry.name.to_ascii_lowercase();
        let full_len = domain.map_or(name.len(), |d| name.len() + 1 + d.len());
        if validate_label(&name).is_err() || full_len > MAX_NAME_LEN {
            omitted.invalid += 1;
            continue;
        }
        let qualified = domain.map(|d| format!("{name}.{}", d.to_ascii_lowercase()));
        if outside.contains(&name) || qualified.as_ref().is_some_and(|q| outside.contains(q)) {
            omitted.taken += 1;
            continue;
        }
        match by_name.get_mut(&name) {
            Some(slot @ Some(_)) => {
                *slot = None;
                omitted.duplicate += 2;
            }
            Some(None) => omitted.duplicate += 1,
            None => {
                by_name.insert(name, Some(&entry.addresses));
            }
        }
    }
    let mut block = String::new();
    let mut written = 0;
    for (name, addresses) in &by_name {
        let Some(addresses) = addresses else { continue };
        if addresses.is_empty() || written == MAX_NAMES {
            omitted.over_limit += 1;
            continue;
        }
        written += 1;
        omitted.addresses_over_limit += addresses.len().saturating_sub(MAX_ADDRESSES_PER_NAME);
        for address in addresses.iter().take(MAX_ADDRESSES_PER_NAME) {
            let _ = match domain {
                Some(domain) => writeln!(block, "{address} {name} {name}.{domain}"),
                None => writeln!(block, "{address} {name}"),
            };
        }
    }
    if block.is_empty() {
        return (block, omitted);
    }
    let block = format!(
        "{}\n{block}{}\n",
        begin_marker(interface),
        end_marker(interface)
    );
    (block, omitted)
}

/// `text` with every block for `interface` taken out and `block` (rendered, possibly empty)
/// put where the first one was, or at the end. Lines outside our blocks stay as they are. A
/// begin marker without its end (someone edited the file) is dropped alone: the lines after
/// it may be the user's.
pub fn replace_block(text: &str, interface: &str, block: &str) -> String {
    let (begin, end) = (begin_marker(interface), end_marker(interface));
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() + block.len());
    let mut placed = false;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if line.trim_end_matches(['\n', '\r']) == begin {
            let close = lines[index + 1..]
                .iter()
                .position(|l| l.trim_end_matches(['\n', '\r']) == end);
            if let Some(offset) = close {
                index += offset + 2;
                if !placed {
                    out.push_str(block);
                    placed = true;
                }
            } else {
                index += 1;
            }
            continue;
        }
        out.push_str(line);
        index += 1;
    }
    if !placed && !block.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(block);
    }
    out
}

/// Why the hosts file could not be updated.
#[derive(Debug, thiserror::Error)]
#[error("hosts file {path}: {source}")]
pub struct HostsFileError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

/// How a write reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    /// Nothing to change.
    Unchanged,
    /// A new file renamed over the old one.
    Renamed,
    /// Rewritten in place, because the file could not be replaced (a bind mount).
    InPlace,
}

/// One interface's block in one hosts file.
#[derive(Debug, Clone)]
pub struct HostsFile {
    path: PathBuf,
    interface: String,
    domain: Option<String>,
}

impl HostsFile {
    /// The block for `interface` in the file at `path`, with `name.<domain>` aliases when a
    /// domain is given.
    pub fn new(path: impl Into<PathBuf>, interface: &str, domain: Option<&str>) -> Self {
        Self {
            path: path.into(),
            interface: interface.to_owned(),
            domain: domain.map(str::to_owned),
        }
    }

    /// The file this block lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the block name exactly `entries` (removing it when none can be named).
    pub fn write(&self, entries: &[HostEntry]) -> Result<(WriteMethod, Omitted), HostsFileError> {
        let mut omitted = Omitted::default();
        let method = self.update(|text| {
            let outside = names_outside_blocks(text);
            let (block, left_out) =
                render_block(&self.interface, self.domain.as_deref(), entries, &outside);
            omitted = left_out;
            replace_block(text, &self.interface, &block)
        })?;
        Ok((method, omitted))
    }

    /// Takes the block out (shutdown, or a crashed run's leftover). A missing file is fine.
    pub fn remove(&self) -> Result<WriteMethod, HostsFileError> {
        if !self.path.exists() {
            return Ok(WriteMethod::Unchanged);
        }
        self.update(|text| replace_block(text, &self.interface, ""))
    }

    /// Read, change, write back, under the directory lock.
    fn update(&self, change: impl FnOnce(&str) -> String) -> Result<WriteMethod, HostsFileError> {
        let error = |source| HostsFileError {
            path: self.path.clone(),
            source,
        };
        // A symbolic link (/etc/hosts → /etc/static/hosts) is followed, so the link stays.
        let target = fs::canonicalize(&self.path).map_err(error)?;
        let dir = target
            .parent()
            .ok_or_else(|| error(io::Error::other("has no parent directory")))?;
        let lock = fs::File::open(dir).map_err(error)?;
        lock.lock().map_err(error)?;
        let text = read_bounded(&target).map_err(error)?;
        let changed = change(&text);
        if changed == text {
            return Ok(WriteMethod::Unchanged);
        }
        write_replacing(&target, dir, changed.as_bytes()).map_err(error)
    }
}

fn read_bounded(path: &Path) -> io::Result<String> {
    let file = fs::File::open(path)?;
    if file.metadata()?.len() > MAX_FILE_LEN {
        return Err(io::Error::other(format!(
            "larger than {MAX_FILE_LEN} bytes; not touched"
        )));
    }
    io::read_to_string(io::Read::take(file, MAX_FILE_LEN))
}

/// Writes `contents` to a new file beside `target` with its mode and owner and renames it
/// over `target`; rewrites `target` in place when it cannot be replaced.
fn write_replacing(target: &Path, dir: &Path, contents: &[u8]) -> io::Result<WriteMethod> {
    let metadata = fs::metadata(target)?;
    let file_name = target.file_name().map_or_else(
        || "hosts".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let staging = dir.join(format!(".{file_name}.wice-{}", std::process::id()));
    let _ = fs::remove_file(&staging);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&staging)?;
        file.write_all(contents)?;
        std::os::unix::fs::fchown(&file, Some(metadata.uid()), Some(metadata.gid()))?;
        file.set_permissions(fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
        file.sync_all()?;
        fs::rename(&staging, target)
    })();
    match written {
        Ok(()) => Ok(WriteMethod::Renamed),
        Err(error) => {
            let _ = fs::remove_file(&staging);
            if matches!(error.raw_os_error(), Some(libc::EBUSY | libc::EXDEV)) {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(target)?;
                file.write_all(contents)?;
                file.sync_all()?;
                Ok(WriteMethod::InPlace)
            } else {
                Err(error)
            }
        }
    }
}

#[cfg(test)]
#[path = "hosts_file_tests.rs"]
mod tests;
