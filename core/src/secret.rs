//! Secrets held as text (TURN passwords and the like): a type whose `Debug` never shows the
//! value, so a `{:?}` of any config or state that holds one cannot leak it into a log.
//!
//! Keys have their own types in [`crate::keys`], which redact the same way.

use std::fmt;

/// A secret string. `Debug` prints `<redacted>`; there is no `Display`. Read the value with
/// [`SecretString::expose`] only where it is used (handing it to the protocol that needs it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_the_value_nor_its_length() {
        let secret = SecretString::new("hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }
}
