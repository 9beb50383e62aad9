//! `mmcompat serve` on loopback (issue 20): the server in-process on 127.0.0.1:0 with the mmyolo
//! nano fixture. Every answer of a bounded concurrent load (64 requests from 8 client threads,
//! raw bodies and multipart uploads of the fixture photos) must equal the real
//! `inference_detector`'s detections for that photo (tests/fixtures/inference/mmyolo__*.json,
//! tests/inference.rs tolerances); bad requests get their documented statuses, /metrics counts
//! exactly what was sent, an overload beyond concurrency + queue gets 429, and a graceful
//! shutdown lets the request in flight finish. Prints throughput and p50/p99 latency
//! (BENCHMARKS.md "Server").

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use mmcompat::inferencer::{Detection, Inferencer};
use mmcompat::serve::{ServeError, ServeOptions, Server, ShutdownHandle};
use serde_json::Value;

use crate::inference::{assert_same_detections, model_files, roots};

const IMAGES: &[&str] = &["chelsea", "coffee", "astronaut", "exif_rot6"];
const CLIENTS: usize = 8;
const PER_CLIENT: usize = 8;
/// Every wait in this file is bounded by this.
const PATIENCE: Duration = Duration::from_secs(120);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference")
}

/// The photo's file bytes as a client would send them. exif_rot6 is sent as OpenCV's decode
/// (a PNG), as tests/threads.rs runs it: JPEG decoders differ by a few LSB (tests/preprocess.rs).
fn image_bytes(image: &str) -> Vec<u8> {
    let file = match image {
        "exif_rot6" => "exif_rot6.decoded.png".to_owned(),
        other => format!("{other}.png"),
    };
    std::fs::read(fixtures().join("images").join(file)).expect("fixture image")
}

fn reference(image: &str) -> Value {
    let path = fixtures().join(format!("mmyolo__{image}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("reference")).expect("json")
}

fn inferencer() -> Arc<Inferencer> {
    static INFERENCER: OnceLock<Arc<Inferencer>> = OnceLock::new();
    Arc::clone(INFERENCER.get_or_init(|| {
        let (config, weights, scope) = model_files("mmyolo");
        let inf = Inferencer::builder()
            .config(&config)
            .weights(&weights)
            .scope(scope)
            .device("cpu")
            .config_roots(roots())
            .build()
            .expect("inferencer");
        Arc::new(inf)
    }))
}

/// A server running on its own thread; `stop` shuts it down and returns `run`'s result.
struct Running {
    addr: SocketAddr,
    handle: ShutdownHandle,
    done: mpsc::Receiver<Result<(), ServeError>>,
}

impl Running {
    fn start(options: ServeOptions) -> Running {
        let server = Server::bind("127.0.0.1:0", inferencer(), options).expect("bind loopback");
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.run());
        });
        Running { addr, handle, done }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn stop(self) {
        self.handle.shutdown();
        self.done
            .recv_timeout(PATIENCE)
            .expect("the server returns after shutdown")
            .expect("the server stops without error");
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

/// (status, Retry-After, body) of a request.
fn answer(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, Option<String>, String) {
    let mut resp = resp.expect("an HTTP answer");
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp.body_mut().read_to_string().expect("body");
    (resp.status().as_u16(), retry, body)
}

fn post_raw(agent: &ureq::Agent, url: &str, bytes: &[u8]) -> (u16, Option<String>, String) {
    answer(
        agent
            .post(url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes),
    )
}

const BOUNDARY: &str = "mmcompat-test-boundary-7d1f";

/// A multipart/form-data body: a text field first (ignored by the server), then the file part.
fn multipart(field: &str, filename: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{BOUNDARY}\r\n"
    )
    .into_bytes();
    let disposition = match filename {
        Some(f) => format!("form-data; name=\"{field}\"; filename=\"{f}\""),
        None => format!("form-data; name=\"{field}\""),
    };
    body.extend(
        format!("Content-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n").bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").bytes());
    body
}

fn post_multipart(agent: &ureq::Agent, url: &str, body: &[u8]) -> (u16, Option<String>, String) {
    answer(
        agent
            .post(url)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .send(body),
    )
}

/// The detections of a `detect --json` record.
fn record_detections(record: &Value) -> Vec<Detection> {
    record["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .map(|d| {
            let b: Vec<f32> = d["bbox"]
                .as_array()
                .expect("bbox")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            Detection {
                bbox: [b[0], b[1], b[2], b[3]],
                score: d["score"].as_f64().expect("score") as f32,
                label: d["label"].as_u64().expect("label") as usize,
                class_name: d["class"].as_str().expect("class").to_owned(),
            }
        })
        .collect()
}

/// Checks one 200 answer against the real stack: the record's name, the image size
/// (`cv2.imread`'s shape in tests/fixtures/inference/images.json) and the detections.
fn check_record(what: &str, body: &str, image: &str, name: &str) {
    let record: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    let shapes: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("images.json")).unwrap()).unwrap();
    let shape = &shapes[image]["imread_shape"];
    assert_eq!(record["image"], name, "{what}: record name");
    assert_eq!(record["height"], shape[0], "{what}: height");
    assert_eq!(record["width"], shape[1], "{what}: width");
    let dets = record_detections(&record);
    let inf = inferencer();
    for d in &dets {
        assert_eq!(d.class_name, inf.class_name(d.label), "{what}: class name");
    }
    assert_same_detections(what, &dets, &reference(image)["detections"]);
}

/// The value of the sample `name` (with its labels, exactly as exposed) in the metrics text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
        .trim()
        .parse()
        .expect("a number")
}

fn metrics_text(agent: &ureq::Agent, server: &Running) -> String {
    let (status, _, body) = answer(agent.get(&server.url("/metrics")).call());
    assert_eq!(status, 200);
    body
}

/// Sends a raw HTTP/1.1 request head (and part of a body) and returns the open stream.
fn raw_request(addr: SocketAddr, content_length: usize, body_part: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "POST /v1/detect HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\n\
         Content-Length: {content_length}\r\n\r\n"
    )
    .unwrap();
    s.write_all(body_part).unwrap();
    s.flush().unwrap();
    s
}

/// Reads one response off a raw stream: (status, head, body), by its Content-Length (the server
/// may keep the connection open, waiting for a body that will never come).
fn raw_response(mut s: TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read the answer");
        assert!(n > 0, "connection closed before the answer's head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().expect("length"))
        })
        .expect("a Content-Length");
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).expect("read the body");
        assert!(n > 0, "connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    (status, head, body)
}

/// Polls `/metrics` until `name` has `value` (the server's own view of its state).
fn wait_for_sample(agent: &ureq::Agent, server: &Running, name: &str, value: f64) {
    let start = Instant::now();
    while sample(&metrics_text(agent, server), name) != value {
        assert!(start.elapsed() < PATIENCE, "{name} never reached {value}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// (photo index, sent as multipart, status, body, seconds) of one load-test request.
type Answer = (usize, bool, u16, String, f64);

#[test]
fn concurrent_load_is_answered_fully_and_correctly_and_counted() {
    const LIMIT: usize = 1 << 20;
    let server = Running::start(ServeOptions {
        concurrency: 2,
        // Room for every client: this test is about correctness under concurrency, not refusal.
        queue: CLIENTS,
        max_body_bytes: LIMIT,
        ..ServeOptions::default()
    });
    let url = server.url("/v1/detect");
    let photos: Vec<Vec<u8>> = IMAGES.iter().map(|i| image_bytes(i)).collect();
    let started = Instant::now();
    // Each client starts at a different photo and alternates raw bodies and multipart uploads.
    let answers: Vec<Vec<Answer>> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, photos) = (&url, &photos);
                s.spawn(move || {
                    let agent = agent();
                    (0..PER_CLIENT)
                        .map(|k| {
                            let i = (c + k) % IMAGES.len();
                            let as_form = (c + k) % 2 == 1;
                            let t = Instant::now();
                            let (status, _, body) = if as_form {
                                let name = format!("{}.png", IMAGES[i]);
                                post_multipart(
                                    &agent,
                                    url,
                                    &multipart("file", Some(&name), &photos[i]),
                                )
                            } else {
                                post_raw(&agent, url, &photos[i])
                            };
                            (i, as_form, status, body, t.elapsed().as_secs_f64())
                        })
                        .collect()
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for (c, runs) in answers.iter().enumerate() {
        assert_eq!(runs.len(), PER_CLIENT, "client {c}: every request answered");
        for (k, (i, as_form, status, body, seconds)) in runs.iter().enumerate() {
            let what = format!("client {c} request {k} ({})", IMAGES[*i]);
            assert_eq!(*status, 200, "{what}: {body}");
            let name = if *as_form {
                format!("{}.png", IMAGES[*i])
            } else {
                "-".to_owned()
            };
            check_record(&what, body, IMAGES[*i], &name);
            latencies.push(*seconds);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len();
    eprintln!(
        "serve load: {n} requests from {CLIENTS} clients (concurrency 2) in {wall:.2} s: \
         {:.1} requests/s, latency p50 {:.0} ms, p99 {:.0} ms",
        n as f64 / wall,
        percentile(&latencies, 50.0) * 1e3,
        percentile(&latencies, 99.0) * 1e3
    );

    // Bad requests, each with its status and a message that says what to do.
    let agent = agent();
    let (status, _, body) = post_raw(&agent, &url, b"");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("empty request body"), "{body}");
    let (status, _, body) = post_raw(&agent, &url, b"GIF89a, certainly not a photo");
    assert_eq!(status, 422, "{body}");
    let error = serde_json::from_str::<Value>(&body).expect("json")["error"].clone();
    assert!(
        error
            .as_str()
            .expect("error text")
            .contains("GIF is not supported"),
        "{body}"
    );
    let (status, _, body) = post_multipart(&agent, &url, &multipart("photo_note", None, b"x"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no file field"), "{body}");
    // Over the limit: refused on the declared length, before any of the body is sent.
    let (status, _, body) = raw_response(raw_request(server.addr, LIMIT + 1, b""));
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("over the server's limit of 1048576 bytes"),
        "{body}"
    );
    let (status, _, _) = answer(agent.get(&server.url("/v2/nothing")).call());
    assert_eq!(status, 404);
    let (status, _, body) = answer(agent.get(&server.url("/healthz")).call());
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model"]["scope"], "mmyolo");
    assert_eq!(health["model"]["device"], "cpu");
    assert_eq!(health["limits"]["concurrency"], 2);

    // /metrics counts exactly what was sent (its own request is counted after it answers).
    let m = metrics_text(&agent, &server);
    let count = |route: &str, status: u16| {
        sample(
            &m,
            &format!("mmcompat_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(count("/v1/detect", 200), (CLIENTS * PER_CLIENT) as f64);
    assert_eq!(count("/v1/detect", 400), 2.0);
    assert_eq!(count("/v1/detect", 413), 1.0);
    assert_eq!(count("/v1/detect", 422), 1.0);
    assert_eq!(count("unmatched", 404), 1.0);
    assert_eq!(count("/healthz", 200), 1.0);
    let errors = |kind: &str| {
        sample(
            &m,
            &format!("mmcompat_detect_errors_total{{kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(errors("bad_request"), 2.0);
    assert_eq!(errors("too_large"), 1.0);
    assert_eq!(errors("undecodable"), 1.0);
    assert_eq!(
        sample(
            &m,
            "mmcompat_http_request_duration_seconds_count{route=\"/v1/detect\"}"
        ),
        (CLIENTS * PER_CLIENT + 4) as f64
    );
    for gauge in [
        "mmcompat_detect_in_flight",
        "mmcompat_detect_queued",
        "mmcompat_inferences_running",
    ] {
        assert_eq!(sample(&m, gauge), 0.0, "{gauge} after the load");
    }
    server.stop();
}

#[test]
fn overload_gets_429_and_shutdown_finishes_the_request_in_flight() {
    // One inference slot, no queue: a single admitted request fills the server.
    let server = Running::start(ServeOptions {
        concurrency: 1,
        queue: 0,
        ..ServeOptions::default()
    });
    let agent = agent();
    let photo = image_bytes("coffee");
    // Held in flight: admitted on its headers, its body half sent.
    let (first, rest) = photo.split_at(photo.len() / 2);
    let mut held = raw_request(server.addr, photo.len(), first);
    wait_for_sample(&agent, &server, "mmcompat_detect_in_flight", 1.0);

    // Refused on its headers: the server answers without reading the body and closes the
    // connection, so the body is not sent (a client still writing it would get a broken pipe).
    let (status, head, body) = raw_response(raw_request(server.addr, photo.len(), b""));
    assert_eq!(status, 429, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"),
        "{head}"
    );
    assert!(
        body.contains("server busy: all 1 inference slots and 0 queue places are taken"),
        "{body}"
    );
    let m = metrics_text(&agent, &server);
    assert_eq!(
        sample(&m, "mmcompat_detect_errors_total{kind=\"overloaded\"}"),
        1.0
    );

    // Shutdown: new connections are refused while the held request is still in flight...
    server.handle.shutdown();
    let start = Instant::now();
    while TcpStream::connect(server.addr).is_ok() {
        assert!(start.elapsed() < PATIENCE, "still accepting after shutdown");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        server.done.try_recv().is_err(),
        "the server must wait for the request in flight"
    );
    // ...which then finishes with the real detections, and only then does the server return.
    held.write_all(rest).unwrap();
    let (status, _, body) = raw_response(held);
    assert_eq!(status, 200, "{body}");
    check_record("request in flight at shutdown", &body, "coffee", "-");
    server
        .done
        .recv_timeout(PATIENCE)
        .expect("the server returns once the request in flight is answered")
        .expect("clean stop");
}
