//! Fixed-duration load over N keep-alive HTTP/1.1 connections, with a latency
//! histogram and the CPU both sides used during the measured window.
//!
//! The client and the servers share the machine's cores, so besides req/s (which a
//! saturated client would cap for both registries alike) we report the server's CPU
//! time per request, a figure that the client's speed does not distort.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::http::Target;
use crate::server::{cpu_seconds, with_children};

pub struct HammerSpec {
    pub method: Method,
    pub path: String,
    pub accept: Option<&'static str>,
    /// Expected Content-Length header value (checked on every response).
    pub content_length: Option<u64>,
    /// Expected body length (checked on every response; 0 for HEAD).
    pub body_len: u64,
}

pub struct HammerResult {
    pub requests: u64,
    pub secs: f64,
    pub hist: Histogram<u64>,
    /// CPU seconds used by the server, and by this bench process, while measuring.
    pub server_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
}

impl HammerResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

pub async fn hammer(
    t: &Target,
    spec: HammerSpec,
    conns: usize,
    warmup: Duration,
    dur: Duration,
) -> Result<HammerResult> {
    let pids: Vec<u32> = t.pid.into_iter().collect();
    hammer_pids(t, spec, &pids, conns, warmup, dur).await
}

/// `hammer`, with the server's CPU summed over `pids` and their children
/// (a registry's replicas, the load balancer's workers, the database's
/// backends).
pub async fn hammer_pids(
    t: &Target,
    spec: HammerSpec,
    pids: &[u32],
    conns: usize,
    warmup: Duration,
    dur: Duration,
) -> Result<HammerResult> {
    let measure_start = Instant::now() + warmup;
    let end = measure_start + dur;
    // The load runs on one thread of its own: a single-threaded runtime costs less
    // CPU per request than work stealing, and leaves the other core to the server.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr = t.addr;
    std::thread::Builder::new()
        .name("hammer".into())
        .spawn(move || {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(load(addr, spec, conns, measure_start, end)));
            let _ = tx.send(r);
        })?;

    tokio::time::sleep_until(measure_start.into()).await;
    let server = with_children(pids);
    let cpu_of =
        |pids: &[u32]| -> Vec<Option<f64>> { pids.iter().map(|p| cpu_seconds(Some(*p))).collect() };
    let (s0, c0) = (cpu_of(&server), cpu_seconds(None));
    let t_start = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let (s1, c1) = (cpu_of(&server), cpu_seconds(None));
    let secs = t_start.elapsed().as_secs_f64();
    // A process gone by the end (a database backend, say) is left out.
    let server_cpu = (!server.is_empty() && s0.iter().any(Option::is_some)).then(|| {
        s0.iter()
            .zip(&s1)
            .filter_map(|(a, b)| Some(b.as_ref()? - a.as_ref()?))
            .sum::<f64>()
    });

    let (requests, hist) = rx.await.context("load thread died")??;
    ensure!(requests > 0, "no request completed in the measured window");
    let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    Ok(HammerResult {
        requests,
        secs,
        hist,
        server_cpu,
        client_cpu: delta(c0, c1),
    })
}

/// Keeps `conns` connections busy until `end`; counts and times the requests
/// started after `measure_start`.
async fn load(
    addr: SocketAddr,
    spec: HammerSpec,
    conns: usize,
    measure_start: Instant,
    end: Instant,
) -> Result<(u64, Histogram<u64>)> {
    let spec = Arc::new(spec);
    let host = addr.to_string();
    let senders = connect_all(addr, conns).await?;
    let mut tasks = Vec::with_capacity(conns);
    for sender in senders {
        let spec = spec.clone();
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            keep_sending(sender, &spec, &host, measure_start, end).await
        }));
    }

    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut requests = 0;
    for task in tasks {
        let (n, h) = task.await??;
        requests += n;
        hist.add(&h)?;
    }
    Ok((requests, hist))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Opens `conns` HTTP/1.1 connections to `addr` (no Nagle delay).
async fn connect_all(addr: SocketAddr, conns: usize) -> Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        senders.push(sender);
    }
    Ok(senders)
}

/// Sends `spec` on one connection, one request after the other, until `end`;
/// the requests started after `measure_start`, and their latencies (µs).
async fn keep_sending(
    mut sender: Sender,
    spec: &HammerSpec,
    host: &str,
    measure_start: Instant,
    end: Instant,
) -> Result<(u64, Histogram<u64>)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut n = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        send_checked(&mut sender, spec, host).await?;
        if t0 >= measure_start {
            let us = t0.elapsed().as_micros().max(1) as u64;
            hist.saturating_record(us);
            n += 1;
        }
    }
    anyhow::Ok((n, hist))
}

/// One request of `spec`, its whole response read and checked: status 200, the
/// expected Content-Length and body length.
async fn send_checked(sender: &mut Sender, spec: &HammerSpec, host: &str) -> Result<()> {
    let mut b = Request::builder()
        .method(spec.method.clone())
        .uri(spec.path.as_str())
        .header("host", host);
    if let Some(a) = spec.accept {
        b = b.header("accept", a);
    }
    let req = b.body(Empty::<Bytes>::new())?;
    sender.ready().await.context("connection closed")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("{} {}", spec.method, spec.path))?;
    let status = resp.status();
    let cl = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = resp.into_body().collect().await?.to_bytes();
    if status != 200 {
        bail!(
            "{} {}: expected status 200, got {status}: {}",
            spec.method,
            spec.path,
            String::from_utf8_lossy(&body[..body.len().min(600)])
        );
    }
    if let Some(want) = spec.content_length {
        ensure!(
            cl == Some(want),
            "{} {}: Content-Length {cl:?}, expected {want}",
            spec.method,
            spec.path
        );
    }
    ensure!(
        body.len() as u64 == spec.body_len,
        "{} {}: body of {} bytes, expected {}",
        spec.method,
        spec.path,
        body.len(),
        spec.body_len
    );
    Ok(())
}
