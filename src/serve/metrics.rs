//! The server's Prometheus metrics (`GET /metrics`, OpenMetrics text through `prometheus-client`):
//! requests by route and status, refused or failed `/v1/detect` requests by reason, request
//! latency by route, and gauges of admitted, queued and running requests.
//!
//! Route labels are the router's route patterns (or `unmatched`), never the raw path, so a client
//! cannot grow the label set. Never: decide a status (the router does) or hold a lock across an
//! await.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets (seconds): from a refused request (sub-millisecond) to a large image on the CPU.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteStatus {
    pub(super) route: String,
    pub(super) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabel {
    pub(super) route: String,
}

/// Why a `/v1/detect` request got no detections.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values as Prometheus users write them
pub(super) enum ErrorKind {
    /// 400: no image in the request (empty body, multipart without a file field).
    bad_request,
    /// 413: body over `--max-body-mb`.
    too_large,
    /// 408: the body did not arrive within the read timeout.
    timeout,
    /// 422: the bytes are not an image mmcompat decodes (or over `--max-image-pixels`).
    undecodable,
    /// 429: every inference slot and queue place taken.
    overloaded,
    /// 503: shutdown had begun.
    shutting_down,
    /// 500: the model failed on a decoded image.
    inference,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorLabel {
    pub(super) kind: ErrorKind,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric of one server, registered once.
#[derive(Debug)]
pub(super) struct Metrics {
    registry: Registry,
    pub(super) requests: Family<RouteStatus, Counter>,
    pub(super) errors: Family<ErrorLabel, Counter>,
    pub(super) latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// Admitted `/v1/detect` requests (uploading, queued or running).
    pub(super) in_flight: Gauge,
    /// Admitted requests waiting for an inference slot.
    pub(super) queued: Gauge,
    /// Inferences running now (at most `--concurrency`).
    pub(super) running: Gauge,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mmcompat");
        let requests = Family::<RouteStatus, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let latency: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::default();
        let queued = Gauge::default();
        let running = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "detect_errors",
            "POST /v1/detect requests answered without detections, by reason",
            errors.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from request headers to the answer, by route",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "detect_in_flight",
            "Admitted POST /v1/detect requests (uploading, queued or running)",
            in_flight.clone(),
        );
        registry.register(
            "detect_queued",
            "Admitted requests waiting for an inference slot",
            queued.clone(),
        );
        registry.register(
            "inferences_running",
            "Inferences running now",
            running.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
            in_flight,
            queued,
            running,
        }
    }

    /// Records one answered request.
    pub(super) fn observe(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub(super) fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&ErrorLabel { kind }).inc();
    }

    /// The OpenMetrics text exposition.
    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Increments a gauge now and decrements it when dropped (also when the request's future is
/// dropped because the client went away).
pub(super) struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub(super) fn new(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
