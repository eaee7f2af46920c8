//! The HTTP middleware: each request counted by endpoint, method and
//! status, timed to its response's headers, its body bytes and its
//! answer's counted as they stream.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use super::Metrics;

pub(super) struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    in_flight: IntGauge,
}

impl HttpMetrics {
    pub(super) fn new(registry: &Registry) -> HttpMetrics {
        HttpMetrics {
            requests: super::counters(
                registry,
                "berth_http_requests_total",
                "HTTP requests answered, by endpoint (a /v2/ endpoint's name or a route's \
                 template), method and status code.",
                &["endpoint", "method", "status"],
            ),
            duration: super::histograms(
                registry,
                "berth_http_request_duration_seconds",
                "Time from a request's arrival to its response's headers, by endpoint.",
                &["endpoint"],
            ),
            bytes_in: super::counters(
                registry,
                "berth_http_request_body_bytes_total",
                "Request body bytes read, by endpoint.",
                &["endpoint"],
            ),
            bytes_out: super::counters(
                registry,
                "berth_http_response_body_bytes_total",
                "Response body bytes sent, by endpoint.",
                &["endpoint"],
            ),
            in_flight: super::gauge(
                registry,
                "berth_http_requests_in_flight",
                "Requests being handled now (until their response's headers).",
            ),
        }
    }
}

tokio::task_local! {
    /// The endpoint's name the handler gives, for the request it is serving.
    static ENDPOINT: Cell<Option<&'static str>>;
}

/// Labels the request being served with its endpoint's name (a bounded
/// set) instead of its route's template (`/v2/{*path}` for every `/v2/`
/// endpoint). Does nothing outside the metrics middleware.
pub fn name_endpoint(name: &'static str) {
    let _ = ENDPOINT.try_with(|cell| cell.set(Some(name)));
}

/// Counts and times one request (applied with `Router::layer`, so that the
/// matched route's template is known).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let m = &metrics.http;
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let received = Arc::new(AtomicU64::new(0));
    let req = req.map(|body| Body::new(Counted::new(body, Tally::Shared(received.clone()))));
    let in_flight = InFlight::new(&m.in_flight);
    let (named, response) = ENDPOINT
        .scope(Cell::new(None), async {
            let response = next.run(req).await;
            (ENDPOINT.with(Cell::get), response)
        })
        .await;
    drop(in_flight);
    let endpoint = named
        .or(route.as_ref().map(MatchedPath::as_str))
        .unwrap_or("unmatched");
    let labels = [endpoint];
    m.duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[endpoint, method, response.status().as_str()])
        .inc();
    // The handler has read (or dropped) the request body by now.
    m.bytes_in
        .with_label_values(&labels)
        .inc_by(received.load(Ordering::Relaxed));
    let sent = Tally::Counter(m.bytes_out.with_label_values(&labels));
    response.map(|body| Body::new(Counted::new(body, sent)))
}

/// A bounded method label: the standard methods, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a body's bytes are counted.
enum Tally {
    /// Read back by the middleware once the handler is done.
    Shared(Arc<AtomicU64>),
    /// The endpoint's counter, as the bytes go (a long download shows
    /// progress before it ends).
    Counter(IntCounter),
}

/// A body that counts the data bytes passing through it and otherwise
/// changes nothing (its size hint is kept, so `Content-Length` is too).
struct Counted {
    inner: Body,
    tally: Tally,
}

impl Counted {
    fn new(inner: Body, tally: Tally) -> Counted {
        Counted { inner, tally }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                match &self.tally {
                    Tally::Shared(total) => {
                        total.fetch_add(n, Ordering::Relaxed);
                    }
                    Tally::Counter(counter) => counter.inc_by(n),
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
