//! Reading a request at the HTTP boundary, shared by the `api` and `ui`
//! adapters (neither imports the other): the client's address, a `Host`
//! fit to build links from, and Basic credentials.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap};
use base64::Engine;

/// The client's address (unspecified when the transport gives none, as in
/// in-process tests).
pub fn source_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The request's `Host` if it is one: a host name, an IPv4 address or a
/// bracketed IPv6 address, with an optional port. Anything else (quotes,
/// commas, spaces, `@`, `/`…) could rewrite a challenge or a link built
/// from it, so it is not used.
pub fn request_host(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            match after {
                "" => (None, None),
                after => (None, Some(after.strip_prefix(':')?)),
            }
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    (name_ok && port_ok).then_some(host)
}

/// Splits a Basic `Authorization` header into user and secret.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, value.parse().unwrap());
        request_host(&headers).map(str::to_string)
    }

    #[test]
    fn only_real_hosts_make_a_realm() {
        for good in [
            "localhost",
            "registry.example.com",
            "127.0.0.1:5000",
            "[::1]",
            "[::1]:5000",
            "my_host-1:443",
        ] {
            assert_eq!(host(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "evil\",error=\"x",
            "a b",
            "user@host",
            "host/path",
            "host:port",
            "host:99999",
            "[::1",
            "[nothost]:80",
            "[::1]x",
            "",
            "a,b",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }
}
