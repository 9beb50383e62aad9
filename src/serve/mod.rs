//! `mmcompat serve`: one [`Inferencer`] behind an HTTP/1 server (axum on tokio).
//!
//! * `POST /v1/detect`: the image file's bytes as the body, or `multipart/form-data` with a file
//!   part → `200` and the JSON record `detect --json` prints for one image (`image` is the part's
//!   filename, or `-` for a raw body). `400` no image in the request, `413` body over
//!   [`ServeOptions::max_body_bytes`], `408` body not received within
//!   [`ServeOptions::body_timeout`], `422` bytes that do not decode, `429` overload, `503`
//!   shutting down, `500` the model failed: all as `{"error": "..."}`; 429 and 503 carry
//!   `Retry-After`.
//! * `GET /healthz`: `200` and the model summary JSON (`503` once shutdown has begun).
//! * `GET /metrics`: Prometheus (OpenMetrics) text (`metrics.rs`).
//!
//! Bounded everywhere: at most [`ServeOptions::concurrency`] inferences at once on tokio's
//! blocking pool (never on the executor threads), at most [`ServeOptions::queue`] admitted
//! requests waiting, anything beyond refused at once (`limits.rs`). Shutdown (a
//! [`ShutdownHandle`], or SIGINT/SIGTERM with [`Server::run_until_signal`]) stops accepting
//! connections, answers new requests on open connections with 503, lets every request in
//! flight finish, then returns.
//!
//! A small public API on purpose: a Rust service embeds the server with [`Server::bind`] +
//! [`Server::run`] and a [`ShutdownHandle`], without depending on axum's types (the router
//! stays private, so axum can be upgraded without breaking users).

mod limits;
mod metrics;
mod router;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::Inferencer;
use limits::Admission;
use metrics::Metrics;
use router::AppState;

/// The server's bounds and output filter.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest accepted request body in bytes (raw or the whole multipart form); default 32 MiB.
    pub max_body_bytes: usize,
    /// Inferences run at once; default: the number of CPU cores.
    pub concurrency: usize,
    /// Admitted requests that may wait for an inference slot beyond `concurrency`; default
    /// `2 × concurrency`. Beyond it: 429.
    pub queue: usize,
    /// How long a request's body may take to arrive (a slow client holds a queue place
    /// meanwhile); default 30 s.
    pub body_timeout: Duration,
    /// Keep only detections with `score > T` (as `detect --score-thr`); `None`: all of them.
    pub score_thr: Option<f32>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        let concurrency = std::thread::available_parallelism().map_or(1, |n| n.get());
        ServeOptions {
            max_body_bytes: 32 << 20,
            concurrency,
            queue: 2 * concurrency,
            body_timeout: router::DEFAULT_BODY_TIMEOUT,
            score_thr: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr}: {source} (another server on that port? choose one with --port, \
         or --port 0 for any free port)"
    )]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// Starts a graceful shutdown of the [`Server`] it came from; cloneable, usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Stop accepting connections, let requests in flight finish, then let `run` return.
    /// Idempotent.
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: ShutdownHandle,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("options", &self.state.options)
            .finish()
    }
}

impl Server {
    /// Listens on `addr` (`("127.0.0.1", 8080)`, `"127.0.0.1:0"` for any free port) for
    /// `inferencer`; nothing is answered until [`Server::run`].
    pub fn bind(
        addr: impl ToSocketAddrs + std::fmt::Debug,
        inferencer: Arc<Inferencer>,
        options: ServeOptions,
    ) -> Result<Server, ServeError> {
        let listener = TcpListener::bind(&addr).map_err(|source| ServeError::Bind {
            addr: format!("{addr:?}"),
            source,
        })?;
        let admission = Admission::new(options.concurrency, options.queue);
        let (tx, _) = watch::channel(false);
        Ok(Server {
            listener,
            state: Arc::new(AppState {
                inferencer,
                admission,
                metrics: Metrics::new(),
                options,
            }),
            shutdown: ShutdownHandle { tx: Arc::new(tx) },
        })
    }

    /// The address it listens on (the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until [`ShutdownHandle::shutdown`], then finishes the requests in flight and
    /// returns. Blocks the calling thread (the server has its own tokio runtime).
    pub fn run(self) -> Result<(), ServeError> {
        self.run_inner(false)
    }

    /// [`Server::run`], also shutting down gracefully on SIGINT (Ctrl-C) or SIGTERM.
    pub fn run_until_signal(self) -> Result<(), ServeError> {
        self.run_inner(true)
    }

    fn run_inner(self, signals: bool) -> Result<(), ServeError> {
        let Server {
            listener,
            state,
            shutdown,
        } = self;
        // Two executor threads move bytes; inference runs on the blocking pool, which the
        // worker permits keep at `concurrency` busy threads.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(state.admission.concurrency)
            .thread_name("mmcompat-serve")
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Runtime)?;
        let addr = listener.local_addr().map_err(ServeError::Serve)?;
        runtime.block_on(async move {
            listener.set_nonblocking(true).map_err(ServeError::Serve)?;
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(ServeError::Serve)?;
            if signals {
                spawn_signal_listeners(&shutdown);
            }
            let mut rx = shutdown.tx.subscribe();
            let signal_state = Arc::clone(&state);
            let stop = async move {
                // `shutdown` (the sender) outlives this future, so the channel stays open.
                let _ = rx.wait_for(|stop| *stop).await;
                signal_state.admission.begin_shutdown();
                tracing::info!(
                    in_flight = signal_state.metrics.in_flight.get(),
                    "shutdown: no new connections; waiting for the requests in flight"
                );
            };
            tracing::info!(
                %addr,
                concurrency = state.admission.concurrency,
                queue = state.admission.queue,
                max_body_bytes = state.options.max_body_bytes,
                "serving POST /v1/detect, GET /healthz, GET /metrics"
            );
            axum::serve(listener, router::router(state))
                .with_graceful_shutdown(stop)
                .await
                .map_err(ServeError::Serve)?;
            drop(shutdown);
            Ok::<(), ServeError>(())
        })?;
        tracing::info!("server stopped: every request answered");
        Ok(())
    }
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM each start the graceful shutdown.
fn spawn_signal_listeners(shutdown: &ShutdownHandle) {
    let handle = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal("SIGINT", &handle);
        }
    });
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                let handle = shutdown.clone();
                tokio::spawn(async move {
                    if term.recv().await.is_some() {
                        on_signal("SIGTERM", &handle);
                    }
                });
            }
            Err(e) => tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT shuts down"),
        }
    }
}

fn on_signal(name: &str, handle: &ShutdownHandle) {
    tracing::warn!("{name}: shutting down (finishing the requests in flight)");
    handle.shutdown();
}
