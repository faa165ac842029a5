//! How a client's HTTP travels, as the command line and the JSON write it.

use serde::{Deserialize, Serialize};

/// How a client's HTTP travels: its version, whether over TLS, and for HTTP/2 how many
/// subscribers share one connection (as the tabs of one browser share one). Written
/// `h1`, `h1-tls`, `h2-tls` (one subscriber per connection) or `h2-tls:N` in the
/// command line and the JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Http {
    /// HTTP/1.1 in cleartext, every run's setting before this one existed.
    #[default]
    H1,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    H1Tls,
    /// HTTP/2 over TLS (ALPN `h2`), `per_connection` subscribers' streams on each
    /// connection; WebSocket by extended CONNECT (RFC 8441).
    H2Tls { per_connection: usize },
}

impl Http {
    pub(crate) fn is_cleartext_h1(&self) -> bool {
        *self == Http::H1
    }

    pub(crate) fn tls(self) -> bool {
        self != Http::H1
    }

    /// How a table names it: `HTTP/2 + TLS, 100 per connection`.
    pub(crate) fn label(self) -> String {
        match self {
            Http::H1 => "HTTP/1.1".to_owned(),
            Http::H1Tls => "HTTP/1.1 + TLS".to_owned(),
            Http::H2Tls { per_connection: 1 } => "HTTP/2 + TLS".to_owned(),
            Http::H2Tls { per_connection } => format!("HTTP/2 + TLS, {per_connection} per connection"),
        }
    }
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Http::H1 => f.write_str("h1"),
            Http::H1Tls => f.write_str("h1-tls"),
            Http::H2Tls { per_connection: 1 } => f.write_str("h2-tls"),
            Http::H2Tls { per_connection } => write!(f, "h2-tls:{per_connection}"),
        }
    }
}

impl std::str::FromStr for Http {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text}: h1, h1-tls, h2-tls or h2-tls:N (N subscribers per connection)");
        match text {
            "h1" => Ok(Http::H1),
            "h1-tls" => Ok(Http::H1Tls),
            "h2-tls" => Ok(Http::H2Tls { per_connection: 1 }),
            _ => {
                let n: usize = text.strip_prefix("h2-tls:").and_then(|n| n.parse().ok()).ok_or_else(invalid)?;
                if n == 0 { Err(invalid()) } else { Ok(Http::H2Tls { per_connection: n }) }
            }
        }
    }
}

impl Serialize for Http {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Http {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_settings_read_back_as_written() {
        for http in [Http::H1, Http::H1Tls, Http::H2Tls { per_connection: 1 }, Http::H2Tls { per_connection: 100 }] {
            assert_eq!(http.to_string().parse::<Http>(), Ok(http));
        }
        assert_eq!("h2-tls:1".parse::<Http>(), Ok(Http::H2Tls { per_connection: 1 }));
        assert!("h2-tls:0".parse::<Http>().is_err() && "h3".parse::<Http>().is_err());
    }
}
