//! One `Inferencer` shared by 8 threads at once (issue 18): every thread's detections equal the
//! real `inference_detector`'s as the sequential run's do (tests/inference.rs tolerances).

use mmcompat::inferencer::{Detection, Inferencer};
use serde_json::Value;

use crate::inference::{assert_same_detections, model_files, roots, source_image};

const IMAGES: &[&str] = &["chelsea", "coffee", "astronaut", "exif_rot6"];
const THREADS: usize = 8;
const ROUNDS: usize = 2;

fn reference(model: &str, image: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inference")
        .join(format!("{model}__{image}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("reference")).expect("json")
}

#[test]
fn eight_threads_on_one_inferencer_equal_sequential_runs() {
    let (config, weights, scope) = model_files("mmyolo");
    let inf = Inferencer::builder()
        .config(&config)
        .weights(&weights)
        .scope(scope)
        .device("cpu")
        .config_roots(roots())
        .build()
        .expect("inferencer");
    let images: Vec<_> = IMAGES.iter().map(|i| source_image(i)).collect();
    let sequential: Vec<Vec<Detection>> = images
        .iter()
        .map(|img| inf.infer(img).expect("infer"))
        .collect();
    for (name, dets) in IMAGES.iter().zip(&sequential) {
        assert_same_detections(name, dets, &reference("mmyolo", name)["detections"]);
    }
    // Each thread starts at a different image so that different images run concurrently.
    let per_thread: Vec<Vec<(usize, Vec<Detection>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (inf, images) = (&inf, &images);
                s.spawn(move || {
                    (0..ROUNDS * images.len())
                        .map(|k| {
                            let i = (t + k) % images.len();
                            (i, inf.infer(&images[i]).expect("infer on a thread"))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    // Not bit for bit: libtorch's intra-op parallelism splits reductions differently when calls
    // arrive from several threads at once, so the last float bits may differ (measured: 2e-5 px).
    // The bar is the one the sequential run meets: the real stack's detections, same tolerances.
    for (t, runs) in per_thread.iter().enumerate() {
        assert_eq!(runs.len(), ROUNDS * IMAGES.len());
        for (i, dets) in runs {
            assert_eq!(
                dets.len(),
                sequential[*i].len(),
                "thread {t}, {}: as many detections as the sequential run",
                IMAGES[*i]
            );
            let name = format!("thread {t}, {}", IMAGES[*i]);
            assert_same_detections(&name, dets, &reference("mmyolo", IMAGES[*i])["detections"]);
        }
    }
}
