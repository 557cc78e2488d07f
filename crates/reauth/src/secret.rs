//! Secret newtypes whose `Debug` output never shows the secret.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// The value is reference counted, so cloning is a pointer copy. `Debug`
        /// prints `[redacted]`; call [`secret`](Self::secret) to read it.
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(secret: impl Into<String>) -> Self {
                Self(Arc::from(secret.into()))
            }

            /// The secret itself. Do not log it.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self::new(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::new)
            }
        }
    };
}

secret_type!(
    /// An OAuth2 access token (the bearer credential sent with each request).
    ///
    /// ```
    /// let token = reauth::AccessToken::new("eyJhbGciOi...");
    /// assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
    /// ```
    AccessToken
);

secret_type!(
    /// An OAuth2 refresh token. Usually one-time: the server rotates it on use.
    ///
    /// ```
    /// let token = reauth::RefreshToken::new("def50200...");
    /// assert!(!format!("{token:?}").contains("def50200"));
    /// ```
    RefreshToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let a = AccessToken::new("top-secret-access");
        let r = RefreshToken::new("top-secret-refresh");
        let out = format!("{a:?} {r:?} {:#?}", (a.clone(), r.clone()));
        assert!(!out.contains("top-secret"), "{out}");
        assert_eq!(a.secret(), "top-secret-access");
    }

    #[test]
    fn serde_round_trips_the_value() {
        let a = AccessToken::new("abc");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"abc\"");
        let back: AccessToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }
}
