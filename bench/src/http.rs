//! One registry under test, and checked HTTP requests to it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::data::ReqBody;

pub type HttpClient = Client<HttpConnector, ReqBody>;

/// A registry being measured: where it listens, and its process (for RSS and CPU).
#[derive(Clone)]
pub struct Target {
    /// "berth" or "distribution".
    pub name: &'static str,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub client: HttpClient,
    /// `Authorization` value sent on every request (`Basic ...`), if any.
    pub authorization: Option<String>,
}

pub fn new_client() -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        // Reads of up to 1 MiB, as the loopback-copy ceiling's reader does.
        .http1_max_buf_size(1 << 20)
        .build(conn)
}

/// Splits `http://host:port[/...]` into the base and a socket address.
pub async fn parse_base(url: &str) -> Result<(String, SocketAddr)> {
    let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported, got {url:?}");
    }
    let auth = uri
        .authority()
        .with_context(|| format!("no host in {url:?}"))?
        .clone();
    let port = auth.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((auth.host(), port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {url:?}"))?;
    Ok((format!("http://{auth}"), addr))
}

/// `Basic base64(user:password)`, for an `Authorization` header.
pub fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {credentials}")
}

/// A URL for error messages: upload-state tokens are long and say nothing.
pub fn short(url: &str) -> String {
    let s = match url.find("_state=") {
        Some(i) => format!("{}_state=…", &url[..i]),
        None => url.to_string(),
    };
    if s.len() > 160 {
        format!("{}…", &s[..160])
    } else {
        s
    }
}

impl Target {
    /// Absolute URL for a path, or the URL itself if a server sent an absolute one.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    /// Sends a request; any status outside `expect` becomes an error carrying the
    /// start of the response body.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
        expect: &[u16],
    ) -> Result<Response<Incoming>> {
        let full = self.url(url);
        let uri: Uri = full
            .parse()
            .with_context(|| format!("bad URL {:?}", short(&full)))?;
        let mut b = Request::builder().method(method.clone()).uri(uri);
        if let Some(a) = &self.authorization {
            b = b.header("authorization", a.as_str());
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body)?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("{method} {}: request failed", short(url)))?;
        let status = resp.status();
        if expect.contains(&status.as_u16()) {
            return Ok(resp);
        }
        let text = body_excerpt(resp).await;
        bail!(
            "{method} {}: expected status {}, got {status}: {text}",
            short(url),
            expect
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

async fn body_excerpt(resp: Response<Incoming>) -> String {
    match read_body(resp).await {
        Ok(b) => {
            let n = b.len().min(600);
            let text = String::from_utf8_lossy(&b[..n]);
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        Err(e) => format!("(body unreadable: {e})"),
    }
}

pub async fn read_body(resp: Response<Incoming>) -> Result<Bytes> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

/// Reads and discards a body; returns its length.
pub async fn drain(resp: Response<Incoming>) -> Result<u64> {
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

pub fn header<B>(resp: &Response<B>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link<B>(resp: &Response<B>) -> Option<String> {
    for v in resp.headers().get_all("link") {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(',') {
            let part = part.trim();
            let (Some(open), Some(close)) = (part.find('<'), part.find('>')) else {
                continue;
            };
            let params = &part[close + 1..];
            if params.contains("rel=\"next\"") || params.contains("rel=next") {
                return Some(part[open + 1..close].to_string());
            }
        }
    }
    None
}

/// `GET path` over a fresh connection, reading the body 1 MiB at a time and
/// discarding it, on a blocking thread: the same reader as the loopback
/// ceiling's, so a timed download measures the server, not a client
/// library. Returns the body's length; a status other than 200, or a body
/// shorter than its `Content-Length`, is an error.
pub async fn plain_download(t: &Target, path: &str) -> Result<u64> {
    use std::io::{Read as _, Write as _};
    let addr = t.addr;
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = &t.authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    let path = path.to_string();
    tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(head.as_bytes())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut have = 0;
        let end = loop {
            let n = s.read(&mut buf[have..])?;
            anyhow::ensure!(n > 0, "GET {path}: connection closed in the headers");
            have += n;
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            anyhow::ensure!(have < buf.len(), "GET {path}: headers too long");
        };
        let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        anyhow::ensure!(
            headers.starts_with("http/1.1 200"),
            "GET {path}: {}",
            headers.lines().next().unwrap_or("")
        );
        let len: u64 = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .context("no Content-Length")?
            .trim()
            .parse()?;
        let mut got = (have - end) as u64;
        while got < len {
            match s.read(&mut buf)? {
                0 => bail!("GET {path}: body ended after {got} of {len} bytes"),
                n => got += n as u64,
            }
        }
        Ok(got)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_authorization_is_rfc4648_base64() {
        assert_eq!(basic_authorization("a", ""), "Basic YTo=");
        assert_eq!(basic_authorization("ab", ""), "Basic YWI6");
        assert_eq!(
            basic_authorization("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
