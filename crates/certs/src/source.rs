//! `tls = "local" | "acme" | { cert = "...", key = "..." }` on a site.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Where a site's certificate comes from.
///
/// ```
/// use rampart_certs::TlsSource;
/// let s: TlsSource = serde_json::from_str(r#"{"cert": "/etc/ssl/erp.pem", "key": "/etc/ssl/erp.key"}"#).unwrap();
/// assert!(matches!(s, TlsSource::Files { .. }));
/// assert_eq!(serde_json::from_str::<TlsSource>(r#""acme""#).unwrap(), TlsSource::Acme);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsSource {
    /// Issued by Rampart's own local CA, kept in the state dir.
    #[default]
    Local,
    /// Obtained and renewed from an ACME CA.
    Acme,
    /// PEM files managed by the administrator.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

impl serde::Serialize for TlsSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            TlsSource::Local => s.serialize_str("local"),
            TlsSource::Acme => s.serialize_str("acme"),
            TlsSource::Files { cert, key } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("cert", cert)?;
                m.serialize_entry("key", key)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for TlsSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TlsSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"local\", \"acme\" or { cert = \"/path/fullchain.pem\", key = \"/path/key.pem\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TlsSource, E> {
                match v {
                    "local" => Ok(TlsSource::Local),
                    "acme" => Ok(TlsSource::Acme),
                    other => Err(E::custom(format!(
                        "unknown tls source {other:?}: use \"local\", \"acme\" or {{ cert = \"...\", key = \"...\" }}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TlsSource, A::Error> {
                let (mut cert, mut key) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "cert" => cert = Some(map.next_value::<PathBuf>()?),
                        "key" => key = Some(map.next_value::<PathBuf>()?),
                        other => return Err(de::Error::unknown_field(other, &["cert", "key"])),
                    }
                }
                match (cert, key) {
                    (Some(cert), Some(key)) => Ok(TlsSource::Files { cert, key }),
                    (None, _) => Err(de::Error::missing_field("cert")),
                    (_, None) => Err(de::Error::missing_field("key")),
                }
            }
        }
        d.deserialize_any(V)
    }
}
