//! The custom ops on tch (`src/ops/`) and mmcv's `batched_nms` paths against references from the
//! real upstream code (tests/fixtures/generate/make_ops_refs.py → tests/fixtures/ops/):
//! * `roi_align`: torchvision.ops.roi_align and a float32 numpy port of mmcv's CPU kernel (avg;
//!   asserted equal in the generator), the port alone for `max` (torchvision has none);
//! * `deform_conv2d`: torchvision.ops.deform_conv2d (with and without mask), equal in the generator
//!   to a numpy port of mmcv's im2col sampling; the Pack layers from real mmcv modules' state dicts;
//! * `batched_nms`: mmcv's python `batched_nms` over the shims' nms kernel, inputs from a shared LCG.
//!
//! Tolerance: max |deviation| ≤ 1e-5 per case (float32).

use std::collections::HashMap;
use std::path::PathBuf;

use mmcompat::ops::{
    deform_conv2d, roi_align, standalone_layer, DeformConv2dPack, DeformConvSpec, DeformGeometry,
    ModulatedDeformConv2dPack, OpError, PoolMode, RoiAlignCfg,
};
use mmcompat::postprocess::nms::batched_nms_or_sort;
use mmcompat::registry::spec::test_cfg::TestCfg;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-5;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops")
}

fn tensors() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir().join("ops.safetensors"))
        .expect("tests/fixtures/ops/ops.safetensors (make_ops_refs.py)")
        .into_iter()
        .collect()
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

fn max_dev(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    if a.numel() == 0 {
        return 0.0;
    }
    (a - b).abs().max().double_value(&[])
}

#[test]
fn roi_align_matches_mmcv_kernel() {
    let t = tensors();
    let cases = json("cases.json");
    let cases = cases["roi_align"].as_array().unwrap();
    assert_eq!(cases.len(), 16);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let size = case["output_size"].as_array().unwrap();
        let cfg = RoiAlignCfg {
            output_size: (size[0].as_i64().unwrap(), size[1].as_i64().unwrap()),
            spatial_scale: case["spatial_scale"].as_f64().unwrap() as f32,
            sampling_ratio: case["sampling_ratio"].as_i64().unwrap(),
            aligned: case["aligned"].as_bool().unwrap(),
            pool_mode: PoolMode::parse(case["pool_mode"].as_str().unwrap()).unwrap(),
        };
        let ours = roi_align(&t["roi.input"], &t["roi.rois"], &cfg).unwrap();
        let reference = &t[name];
        let dev = max_dev(&ours, reference);
        assert!(dev <= TOL, "{name}: max |dev| {dev}");
        // The case must exercise real values, not only the zeros of outside RoIs.
        assert!(reference.abs().max().double_value(&[]) > 0.1, "{name}");
    }
}

#[test]
fn roi_align_on_empty_rois_and_many_channels_chunks() {
    let input = Tensor::randn([2, 3, 10, 12], (Kind::Float, Device::Cpu));
    let none = Tensor::zeros([0, 5], (Kind::Float, Device::Cpu));
    let out = roi_align(&input, &none, &RoiAlignCfg::default()).unwrap();
    assert_eq!(out.size(), [0, 3, 7, 7]);
    // Chunking is invisible: the same RoI repeated 300 times gives 300 equal outputs.
    let t = tensors();
    let rois = t["roi.rois"].narrow(0, 0, 1).repeat([300, 1]);
    let cfg = RoiAlignCfg {
        spatial_scale: 0.25,
        ..RoiAlignCfg::default()
    };
    let out = roi_align(&t["roi.input"], &rois, &cfg).unwrap();
    let reference = &t["roi.7x7.s0.25.a1.sr0.avg"].narrow(0, 0, 1);
    assert!(max_dev(&out, &reference.expand([300, 3, 7, 7], false)) <= TOL);
}

fn deform_case(t: &HashMap<String, Tensor>, case: &Value) -> (Tensor, Tensor) {
    let name = case["name"].as_str().unwrap();
    let get = |k: &str| t.get(&format!("dcn.{name}.{k}"));
    let int = |k: &str| case[k].as_i64().unwrap();
    let geometry = DeformGeometry {
        stride: [int("stride"); 2],
        padding: [int("padding"); 2],
        dilation: [int("dilation"); 2],
        groups: int("groups"),
        deform_groups: int("deform_groups"),
    };
    let ours = deform_conv2d(
        get("input").unwrap(),
        get("offset").unwrap(),
        get("weight").unwrap(),
        get("bias"),
        &geometry,
        get("mask"),
    )
    .unwrap();
    (ours, get("output").unwrap().shallow_clone())
}

#[test]
fn deform_conv2d_matches_torchvision_and_mmcv_port() {
    let t = tensors();
    let cases = json("cases.json");
    let cases = cases["deform_conv"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let (ours, reference) = deform_case(&t, case);
        let dev = max_dev(&ours, &reference);
        assert!(dev <= TOL, "{}: max |dev| {dev}", case["name"]);
        assert!(reference.abs().max().double_value(&[]) > 0.1);
    }
}

#[test]
fn deform_pack_layers_match_mmcv_modules() {
    let t = tensors();
    let cases = json("cases.json");
    for case in cases["deform_pack"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let int = |k: &str| case[k].as_i64().unwrap();
        let spec = DeformConvSpec {
            in_channels: int("in_channels"),
            out_channels: int("out_channels"),
            kernel: int("kernel"),
            geometry: DeformGeometry {
                stride: [int("stride"); 2],
                padding: [int("padding"); 2],
                deform_groups: int("deform_groups"),
                ..DeformGeometry::default()
            },
            bias: name == "mpack",
        };
        let modulated = case["type"] == "ModulatedDeformConv2dPack";
        type Forward = Box<dyn Fn(&Tensor) -> Result<Tensor, OpError>>;
        let (forward, vs, keys) =
            standalone_layer(Device::Cpu, |ctx| -> Result<Forward, OpError> {
                Ok(if modulated {
                    let m = ModulatedDeformConv2dPack::new(ctx, &spec)?;
                    Box::new(move |x| m.forward(x))
                } else {
                    let m = DeformConv2dPack::new(ctx, &spec)?;
                    Box::new(move |x| m.forward(x))
                })
            })
            .unwrap();
        // Our expected keys are mmcv's state-dict names.
        let mut ours: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
        ours.sort();
        let upstream: Vec<String> = case["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(ours, upstream, "{name}");
        tch::no_grad(|| {
            for (key, mut var) in vs.variables() {
                var.copy_(&t[&format!("{name}.sd.{key}")]);
            }
        });
        let out = forward(&t[&format!("{name}.input")]).unwrap();
        let dev = max_dev(&out, &t[&format!("{name}.output")]);
        assert!(dev <= TOL, "{name}: max |dev| {dev}");
    }
}

#[test]
fn bad_op_arguments_are_errors_naming_the_fix() {
    let x = Tensor::zeros([1, 4, 5, 5], (Kind::Float, Device::Cpu));
    let w = Tensor::zeros([2, 4, 3, 3], (Kind::Float, Device::Cpu));
    let geometry = DeformGeometry {
        padding: [1, 1],
        ..DeformGeometry::default()
    };
    let off = |c| Tensor::zeros([1, c, 5, 5], (Kind::Float, Device::Cpu));
    let err = deform_conv2d(&x, &off(9), &w, None, &geometry, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "deform_conv2d: `offset` has shape [1, 9, 5, 5], expected [1, 18 (= 2 · deform_groups 1 \
         · 3·3 kernel points), 5, 5]"
    );
    let err = deform_conv2d(&x, &off(18), &w, None, &geometry, Some(&off(18))).unwrap_err();
    assert!(
        err.to_string().contains("`mask` has shape [1, 18, 5, 5]"),
        "{err}"
    );
    let groups2 = DeformGeometry {
        groups: 2,
        ..geometry
    };
    let err = deform_conv2d(&x, &off(18), &w, None, &groups2, None).unwrap_err();
    assert!(
        err.to_string().contains("`weight` has shape [2, 4, 3, 3]"),
        "{err}"
    );
    let err = deform_conv2d(&x.view([4, 5, 5]), &off(18), &w, None, &geometry, None).unwrap_err();
    assert!(err.to_string().contains("expected [N, C, H, W]"), "{err}");
    let rois = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
    let err = roi_align(&x, &rois, &RoiAlignCfg::default()).unwrap_err();
    assert!(matches!(err, OpError::Shape { arg: "rois", .. }), "{err}");
    let (_, _, _) = standalone_layer(Device::Cpu, |ctx| {
        let spec = DeformConvSpec {
            in_channels: 4,
            out_channels: 2,
            kernel: 3,
            geometry,
            bias: true,
        };
        let err = DeformConv2dPack::new(ctx, &spec).unwrap_err();
        assert!(
            err.to_string().contains("bias=True is not supported"),
            "{err}"
        );
        Ok::<_, OpError>(())
    })
    .unwrap();
}

/// The generator's `Lcg` (32-bit, 24-bit outputs).
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1664525).wrapping_add(1013904223);
        self.0 >> 8
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// `make_ops_refs.py: nms_inputs`.
fn nms_inputs(
    seed: u32,
    n: usize,
    classes: u32,
    span: u32,
) -> (Vec<[f32; 4]>, Vec<f32>, Vec<usize>) {
    let mut rng = Lcg(seed);
    let mut boxes = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let x1 = rng.below(span) as f32 - 20.0;
        let y1 = rng.below(span) as f32 - 20.0;
        let bw = 1.0 + rng.below(60) as f32;
        let bh = 1.0 + rng.below(60) as f32;
        boxes.push([x1, y1, x1 + bw, y1 + bh]);
        labels.push(rng.below(classes) as usize);
    }
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        perm.swap(i, j);
    }
    let scores = perm.iter().map(|&p| (p + 1) as f32 / n as f32).collect();
    (boxes, scores, labels)
}

#[test]
fn batched_nms_matches_mmcv_python_on_both_paths() {
    let fixture = json("nms.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let u = |k: &str| case[k].as_u64().unwrap();
        let (boxes, scores, labels) = nms_inputs(
            u("seed") as u32,
            u("n") as usize,
            u("classes") as u32,
            u("span") as u32,
        );
        // The LCG reproduces the generator's inputs.
        let first: Vec<f32> = serde_json::from_value(case["first_box"].clone()).unwrap();
        assert_eq!(first, boxes[0], "{name}");
        assert_eq!(labels[0] as u64, u("first_label"), "{name}");
        assert_eq!(
            scores[scores.len() - 1] as f64,
            case["last_score"].as_f64().unwrap()
        );
        // The `nms` dict goes through the same parser as a config's test_cfg.
        let test_cfg =
            TestCfg::parse(&serde_json::json!({ "nms": case["nms_cfg"] }), "test_cfg").unwrap();
        let keep = batched_nms_or_sort(&boxes, &scores, &labels, test_cfg.nms.as_ref());
        let expected: Vec<usize> = serde_json::from_value(case["keep"].clone()).unwrap();
        assert_eq!(keep.len(), expected.len(), "{name}");
        assert_eq!(keep, expected, "{name}");
    }
    // The 10000-box case takes the per-class path, the 9999-box case the single NMS; with 80
    // classes both must suppress something and keep far from everything.
    for name in ["ten_thousand", "below_ten_thousand"] {
        let case = cases.iter().find(|c| c["name"] == name).unwrap();
        let kept = case["keep"].as_array().unwrap().len();
        assert!(
            kept > 100 && kept < case["n"].as_u64().unwrap() as usize,
            "{name}: {kept}"
        );
    }
}

/// Not a benchmark: prints the time of one RoIAlign of 1000 RoIs on a `[1, 256, 200, 336]` map
/// (the stride-4 level of an 800×1344 input), for boxes of the size mmdet's `SingleRoIExtractor`
/// sends to that level (< 112 px) and for boxes of 16–256 px. Run with
/// `cargo test --test tests ops::op_timings -- --ignored --nocapture`; also one RepPoints-sized
/// deformable convolution (256→256, 3×3, on the stride-8 level `[1, 256, 100, 168]`).
#[test]
#[ignore]
fn op_timings() {
    tch::manual_seed(0);
    // `OPS_TIMING_THREADS=1` avoids measuring OpenMP contention on a busy shared machine.
    if let Some(n) = std::env::var("OPS_TIMING_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tch::set_num_threads(n);
    }
    println!("libtorch intra-op threads: {}", tch::get_num_threads());
    let cpu = (Kind::Float, Device::Cpu);
    let input = Tensor::randn([1, 256, 200, 336], cpu);
    for (label, min, max) in [("16-112 px", 16.0, 112.0), ("16-256 px", 16.0, 256.0)] {
        let u = Tensor::rand([1000, 4], cpu);
        let w = u.select(1, 2) * (max - min) + min;
        let h = u.select(1, 3) * (max - min) + min;
        let x1 = u.select(1, 0) * (1344.0 - max);
        let y1 = u.select(1, 1) * (800.0 - max);
        let rois = Tensor::stack(
            &[
                Tensor::zeros([1000], cpu),
                x1.shallow_clone(),
                y1.shallow_clone(),
                &x1 + &w,
                &y1 + &h,
            ],
            1,
        );
        for mode in [PoolMode::Avg, PoolMode::Max] {
            let cfg = RoiAlignCfg {
                spatial_scale: 0.25,
                pool_mode: mode,
                ..RoiAlignCfg::default()
            };
            let _ = roi_align(&input, &rois.narrow(0, 0, 10), &cfg).unwrap();
            let start = std::time::Instant::now();
            let out = roi_align(&input, &rois, &cfg).unwrap();
            println!(
                "roi_align {mode:?}, 1000 RoIs of {label} on [1,256,200,336]: {:.0} ms ({:?})",
                start.elapsed().as_secs_f64() * 1e3,
                out.size()
            );
        }
    }
    let x = Tensor::randn([1, 256, 100, 168], cpu);
    let offset = Tensor::randn([1, 18, 100, 168], cpu);
    let weight = Tensor::randn([256, 256, 3, 3], cpu) * 0.02;
    let geometry = DeformGeometry {
        padding: [1, 1],
        ..DeformGeometry::default()
    };
    let start = std::time::Instant::now();
    let out = deform_conv2d(&x, &offset, &weight, None, &geometry, None).unwrap();
    let deform = start.elapsed().as_secs_f64() * 1e3;
    let start = std::time::Instant::now();
    let _ = x.conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    println!(
        "deform_conv2d 256->256 3x3 on [1,256,100,168]: {deform:.0} ms (plain conv2d: {:.0} ms) {:?}",
        start.elapsed().as_secs_f64() * 1e3,
        out.size()
    );
}
