//! Human-writable values: `"720s"`, `"15m"`, `"256MiB"`, `"10.0.0.0/8"`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as `"720s"`, `"15m"`, `"1h30m"`, `"1h 30m"`, `"1.5s"`,
/// `"500ms"`, `"30d"`, or a bare integer number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    /// The std duration.
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = String;
    /// humantime's parser (any order of `ms`, `s`, `m`, `h`, `d`, `w`,
    /// spaces between parts, fractions such as `"1.5s"`, every step
    /// checked for overflow), with two refusals of our own: months and
    /// years have no fixed length, and `"1 5m"` is not `"15m"`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration (write e.g. \"30s\", \"15m\", \"1h\")".into());
        }
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
        let units = "(use ms, s, m, h, d)";
        let words: Vec<&str> = s.split_whitespace().collect();
        if words.windows(2).any(|w| {
            w[0].ends_with(|c: char| c.is_ascii_digit())
                && w[1].starts_with(|c: char| c.is_ascii_digit())
        }) {
            return Err(format!(
                "invalid duration {s:?}: a space inside a number (write e.g. \"1h 30m\")"
            ));
        }
        for word in s.split(|c: char| !c.is_alphabetic()) {
            if matches!(
                word,
                "M" | "month" | "months" | "y" | "yr" | "yrs" | "year" | "years"
            ) {
                return Err(format!(
                    "invalid duration {s:?}: months and years have no fixed length {units}"
                ));
            }
        }
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            use humantime::DurationError as E;
            match e {
                E::UnknownUnit { unit, .. } if unit.is_empty() => {
                    format!("invalid duration {s:?}: missing unit {units}")
                }
                E::UnknownUnit { unit, .. } => {
                    format!("invalid duration {s:?}: unknown unit {unit:?} {units}")
                }
                E::NumberOverflow => format!(
                    "invalid duration {s:?}: too large (or finer than a nanosecond)"
                ),
                E::InvalidCharacter(at) | E::NumberExpected(at) => format!(
                    "invalid duration {s:?}: unexpected {:?} at byte {at}; write e.g. \"30s\", \"1h 30m\", \"1.5s\"",
                    s[at..].chars().next().unwrap_or(' ')
                ),
                E::Empty => "empty duration (write e.g. \"30s\", \"15m\", \"1h\")".into(),
            }
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let (s, ms, ns) = (d.as_secs(), d.subsec_millis(), d.subsec_nanos() % 1_000_000);
        if s == 0 && ns != 0 {
            // Finer than a millisecond ("1.5s" is exact; "0.0000015s" too).
            return write!(f, "{}ns", d.subsec_nanos());
        }
        if s == 0 {
            return write!(f, "{ms}ms");
        }
        // Whole seconds in the largest unit that divides them, then any
        // milliseconds: "1s500ms" reads back even when s * 1000 would
        // not fit in a number.
        let (n, unit) = [(86400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(n, _)| s.is_multiple_of(*n))
            .map_or((s, "s"), |(n, u)| (s / n, u));
        write!(f, "{n}{unit}")?;
        if ms != 0 {
            write!(f, "{ms}ms")?;
        }
        if ns != 0 {
            write!(f, "{ns}ns")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"15m\", \"1h\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size written as `"256MiB"`, `"1GB"`, `"512k"` or a bare number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }
    /// The number of bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if split == 0 {
            return Err(format!(
                "invalid size {s:?}: expected a number, e.g. \"256MiB\""
            ));
        }
        let n: u64 = t[..split]
            .parse()
            .map_err(|_| format!("invalid size {s:?}: number too large"))?;
        let mult: u64 = match t[split..].trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            "t" | "tb" => 1000u64.pow(4),
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= m && n.is_multiple_of(m) {
                return write!(f, "{}{unit}", n / m);
            }
        }
        write!(f, "{n}B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"256MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An address range (`"10.0.0.0/8"`, `"2001:db8::/32"`) or a single address
/// (`"192.0.2.7"`, taken as /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    /// Whether the range holds `ip` (IPv4-mapped IPv6 compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical_ip(ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket
/// reports) are compared as the IPv4 address they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| {
                format!("invalid address range {s:?}: write e.g. \"10.0.0.0/8\" or \"192.0.2.7\"")
            })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "720s".parse::<Duration>().unwrap(),
            Duration::from_secs(720)
        );
        assert_eq!("15m".parse::<Duration>().unwrap(), Duration::from_secs(900));
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!("30".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert!(
            "30x"
                .parse::<Duration>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!("s".parse::<Duration>().is_err());
        assert!("10".parse::<Duration>().is_ok());
        assert_eq!(Duration::from_secs(900).to_string(), "15m");
    }

    #[test]
    fn spaces_fractions_and_refusals() {
        let secs = |s: &str| s.parse::<Duration>().map(|d| d.get());
        assert_eq!(secs("1h 30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(secs("1.5s"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(
            secs(" 2d 1h "),
            Ok(std::time::Duration::from_secs(2 * 86400 + 3600))
        );
        assert_eq!(
            Duration(std::time::Duration::from_millis(1500)).to_string(),
            "1s500ms"
        );
        let fine = Duration(std::time::Duration::new(1, 500_000_250));
        assert_eq!(fine.to_string().parse::<Duration>(), Ok(fine));
        let tiny = Duration(std::time::Duration::from_nanos(1500));
        assert_eq!(tiny.to_string().parse::<Duration>(), Ok(tiny));
        for (bad, why) in [
            ("1 5m", "space inside a number"),
            ("1M", "no fixed length"),
            ("2 years", "no fixed length"),
            ("1h-5m", "unexpected"),
            ("1.5.5s", "unexpected"),
            ("7 fortnights", "unknown unit"),
        ] {
            let e = bad.parse::<Duration>().unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn overflowing_durations_are_errors_not_panics_or_wraps() {
        for s in [
            "18446744073709551615s18446744073709551615s",
            "999999999999999999d",
            "307445734561825861m",
            "5124095576030432h",
            "18446744073709551616s",
        ] {
            let e = s.parse::<Duration>().unwrap_err();
            assert!(e.contains("too large"), "{s}: {e}");
        }
        assert_eq!(
            "213503982334601d".parse::<Duration>().unwrap(),
            Duration::from_secs(213_503_982_334_601 * 86400)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!("256MiB".parse::<ByteSize>().unwrap(), ByteSize::mib(256));
        assert_eq!("1GB".parse::<ByteSize>().unwrap(), ByteSize(1_000_000_000));
        assert_eq!("64 KiB".parse::<ByteSize>().unwrap(), ByteSize::kib(64));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::mib(256).to_string(), "256MiB");
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
