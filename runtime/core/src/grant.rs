//! What a stage grants its plugin beyond `host`, as configured: the data
//! the config resolves and the Wasm host enforces. The key-value store
//! itself is [`crate::kv`]; outbound HTTP is described here.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// Outbound HTTP (`wasi:http/outgoing-handler`) for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// The only `host:port`s requests may go to.
    pub allow: Vec<Endpoint>,
    /// Longest a request may take, from connecting to the last byte of the
    /// response (the plugin call's `timeout` bounds it too).
    pub timeout: Duration,
    /// Largest response body, in bytes.
    pub max_response: u64,
}

impl HttpGrant {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_MAX_RESPONSE: u64 = 1024 * 1024;

    /// The allow-list entry of `host:port`, if any (names without case).
    pub fn allowed(&self, host: &str, port: u16) -> Option<&Endpoint> {
        self.allow
            .iter()
            .find(|e| e.port == port && e.host.eq_ignore_ascii_case(host))
    }

    /// Whether `ip:port` itself is listed (an IP literal entry).
    pub fn lists_address(&self, ip: IpAddr, port: u16) -> bool {
        self.allow
            .iter()
            .any(|e| e.port == port && e.ip() == Some(ip))
    }
}

/// One `host:port` of an allow-list: a DNS name or an IP address
/// (`[::1]:8080` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// The address, when the entry is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{text}` is not HOST:PORT (e.g. \"api.example.com:443\", \"127.0.0.1:8080\", \"[::1]:8080\")")
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let is_name = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if port == 0 || (host.parse::<IpAddr>().is_err() && !is_name) {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Addresses a request may reach only when they are listed themselves:
/// loopback, private, link-local, shared (CGNAT), unspecified, broadcast,
/// multicast, documentation, and their IPv4-mapped IPv6 forms.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_names_and_addresses() {
        let e: Endpoint = "API.example.com:443".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("api.example.com", 443));
        let e: Endpoint = "[::1]:8080".parse().unwrap();
        assert_eq!(e.ip(), Some("::1".parse().unwrap()));
        assert_eq!(e.to_string(), "[::1]:8080");
        for bad in ["api.example.com", "x:0", ":80", "a b:80", "host:99999"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses_are_told_from_public_ones() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn only_listed_addresses_count_as_listed() {
        let grant = HttpGrant {
            allow: vec![
                "localhost:8080".parse().unwrap(),
                "127.0.0.1:9090".parse().unwrap(),
            ],
            timeout: HttpGrant::DEFAULT_TIMEOUT,
            max_response: HttpGrant::DEFAULT_MAX_RESPONSE,
        };
        assert!(grant.allowed("LOCALHOST", 8080).is_some());
        assert!(grant.allowed("localhost", 9090).is_none());
        let lo = "127.0.0.1".parse().unwrap();
        assert!(
            !grant.lists_address(lo, 8080),
            "a name does not list its address"
        );
        assert!(grant.lists_address(lo, 9090));
    }
}
