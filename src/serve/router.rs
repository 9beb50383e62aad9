//! The routes: `POST /v1/detect` (image bytes or multipart → the `detect --json` record),
//! `GET /healthz` (model summary), `GET /metrics` (Prometheus text), and the middleware that
//! counts and times every answer.
//!
//! Decoding and inference run on tokio's blocking pool (`spawn_blocking`), each holding one of
//! the `concurrency` worker permits; the async executor threads only move bytes. Never: run a
//! model on an executor thread, buffer a body past the limit, or queue without a bound
//! (`limits.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::limits::{Admission, Refusal};
use super::metrics::{ErrorKind, GaugeGuard, Metrics};
use super::ServeOptions;
use crate::inferencer::{detections_record, Inferencer};
use crate::preprocess::decode_image_bytes_with;

/// What every handler shares.
pub(super) struct AppState {
    pub(super) inferencer: Arc<Inferencer>,
    pub(super) admission: Admission,
    pub(super) metrics: Metrics,
    pub(super) options: ServeOptions,
}

/// Seconds a refused client is told to wait (`Retry-After`): about one inference on the CPU.
const RETRY_AFTER_SECONDS: u64 = 1;

pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/detect", post(detect))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(DefaultBodyLimit::max(state.options.max_body_bytes))
        .with_state(state)
}

/// Counts and times every answer under its route pattern (`unmatched` for unknown paths).
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.observe(&route, status, seconds);
    tracing::debug!(%method, route, status, ms = seconds * 1e3, "answered");
    response
}

/// A request answered without detections: its status, metrics reason and message.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// `{"error": message}` with the status; `Retry-After` on 429/503.
    fn respond(self, metrics: &Metrics) -> Response {
        metrics.error(self.kind);
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = self.status.as_u16(), "{}", self.message);
        } else {
            tracing::debug!(status = self.status.as_u16(), "{}", self.message);
        }
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json!({"error": self.message}).to_string(),
        )
            .into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

async fn detect(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match detect_record(&state, req).await {
        Ok(record) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            record,
        )
            .into_response(),
        Err(e) => e.respond(&state.metrics),
    }
}

/// Admission → body → an inference slot → decode + infer on the blocking pool → the record.
async fn detect_record(state: &Arc<AppState>, req: Request) -> Result<String, ApiError> {
    let ticket = state
        .admission
        .try_admit()
        .map_err(|refusal| match refusal {
            Refusal::Overloaded => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::overloaded,
                format!(
                    "server busy: all {} inference slots and {} queue places are taken \
                 (--concurrency, --queue); retry after {RETRY_AFTER_SECONDS} s",
                    state.admission.concurrency, state.admission.queue
                ),
            ),
            Refusal::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::shutting_down,
                "server shutting down: finishing the requests in flight, accepting no new ones",
            ),
        })?;
    let _in_flight = GaugeGuard::new(&state.metrics.in_flight);
    let timeout = state.options.body_timeout;
    let (name, bytes) =
        tokio::time::timeout(timeout, read_image(req, state.options.max_body_bytes))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorKind::timeout,
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                )
            })??;
    let permit = {
        let _queued = GaugeGuard::new(&state.metrics.queued);
        state.admission.worker(&ticket).await
    };
    let task_state = Arc::clone(state);
    let task = tokio::task::spawn_blocking(move || {
        // Both places are held until the inference ends, even if the client has gone.
        let (_ticket, _permit) = (ticket, permit);
        let _running = GaugeGuard::new(&task_state.metrics.running);
        infer_record(&task_state, &name, &bytes)
    });
    task.await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::inference,
            format!("the inference task failed: {e}"),
        )
    })?
}

/// Decode like `cv2.imdecode` and run the model: the `detect --json` record of one image.
fn infer_record(state: &AppState, name: &str, bytes: &[u8]) -> Result<String, ApiError> {
    let inferencer = &state.inferencer;
    let shown = if name == "-" { "<request body>" } else { name };
    let img = decode_image_bytes_with(bytes, shown, inferencer.decode_limits()).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::undecodable,
            e.to_string(),
        )
    })?;
    let dets: Vec<_> = inferencer
        .infer(&img)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::inference,
                e.to_string(),
            )
        })?
        .into_iter()
        .filter(|d| state.options.score_thr.is_none_or(|t| d.score > t))
        .collect();
    Ok(detections_record(name, img.width, img.height, &dets))
}

fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::too_large,
        format!(
            "{what} is over the server's limit of {limit} bytes (--max-body-mb); send a smaller \
             image or raise the limit"
        ),
    )
}

/// The image's (record name, bytes): a multipart upload's file field (named by its filename) or
/// the raw body (named `-`, as `detect` names stdin-like input).
async fn read_image(req: Request, limit: usize) -> Result<(String, Bytes), ApiError> {
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        return Err(too_large(&format!("the request body ({n} bytes)"), limit));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("multipart/form-data"));
    if is_multipart {
        return read_multipart(req, limit).await;
    }
    let bytes = Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large("the request body", limit)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::bad_request,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::bad_request,
            "empty request body: POST the image file's bytes (curl --data-binary @photo.jpg) or \
             a multipart form with a file field (curl -F file=@photo.jpg)",
        ));
    }
    Ok(("-".to_owned(), bytes))
}

/// The first part with a filename, else the first part named `file` or `image`.
async fn read_multipart(req: Request, limit: usize) -> Result<(String, Bytes), ApiError> {
    let bad =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::bad_request, message);
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|r| bad(format!("malformed multipart request: {}", r.body_text())))?;
    let mut seen = Vec::new();
    loop {
        let field = form.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large("the multipart body", limit)
            } else {
                bad(format!("malformed multipart body: {}", e.body_text()))
            }
        })?;
        let Some(field) = field else {
            return Err(bad(format!(
                "the multipart form has no file field (fields: [{}]); send the image as a file \
                 part, e.g. curl -F file=@photo.jpg",
                seen.join(", ")
            )));
        };
        let field_name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        if file_name.is_none() && !matches!(field_name.as_str(), "file" | "image") {
            seen.push(format!("{field_name:?}"));
            continue;
        }
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large("the multipart body", limit)
            } else {
                bad(format!(
                    "cannot read multipart field {field_name:?}: {}",
                    e.body_text()
                ))
            }
        })?;
        if bytes.is_empty() {
            return Err(bad(format!("multipart field {field_name:?} is empty")));
        }
        return Ok((file_name.unwrap_or_else(|| "-".to_owned()), bytes));
    }
}

/// 200 with the model summary while serving; 503 once shutdown has begun (load balancers stop
/// sending).
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let shutting_down = state.admission.is_shutting_down();
    let inf = &state.inferencer;
    let body = json!({
        "status": if shutting_down { "shutting_down" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "model": {
            "scope": inf.scope(),
            "distillation": inf.distillation(),
            "adapters": inf.adapters(),
            "device": device_name(inf.device()),
            "classes": inf.class_names(),
        },
        "limits": {
            "concurrency": state.admission.concurrency,
            "queue": state.admission.queue,
            "max_body_bytes": state.options.max_body_bytes,
            "max_image_pixels": inf.decode_limits().max_pixels,
        },
        "score_thr": state.options.score_thr,
    });
    let status = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The `--device` spelling of a device (`cpu`, `cuda:0`).
fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        tch::Device::Cpu => "cpu".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        Body::from(state.metrics.render()),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json!({"error": format!(
            "no route {} {}; routes: POST /v1/detect, GET /healthz, GET /metrics",
            req.method(),
            req.uri().path()
        )})
        .to_string(),
    )
        .into_response()
}

/// How long `read_image` may take by default (`ServeOptions::body_timeout`).
pub(super) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
