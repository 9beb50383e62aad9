//! Writers: round trip through the real torch.

use std::path::Path;

use mmcompat_registry::checkpoint::{write_pth, write_safetensors, Checkpoint, Format, TensorData};
use mmcompat_registry::DType;
use serde_json::{json, Value as J};

use super::{data, decode, manifest, read_json, venv_python};

fn f16_bits(x: f32) -> u16 {
    // exact for the values used below (normal halves)
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let frac = ((b >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | frac
}

/// Deterministic tensors of every dtype, and the meta written with them.
fn written_tensors() -> (Vec<(String, TensorData<'static>)>, J) {
    let le = |v: Vec<Vec<u8>>| v.concat();
    let t = |name: &str, dtype: DType, shape: &[usize], data: Vec<u8>| {
        (
            name.to_string(),
            TensorData::new(dtype, shape.to_vec(), data),
        )
    };
    let tensors = vec![
        t(
            "backbone.conv.weight",
            DType::F32,
            &[2, 3],
            le((0..6)
                .map(|i| (i as f32 * 0.25 - 1.0).to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "backbone.conv.bias",
            DType::F16,
            &[3],
            le([0.5f32, -1.0, 2.0]
                .iter()
                .map(|&x| f16_bits(x).to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "backbone.bn.weight",
            DType::BF16,
            &[2],
            le([1.0f32, -2.5]
                .iter()
                .map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "neck.f64",
            DType::F64,
            &[2],
            le([1e-3f64, -2.5]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "neck.num_batches_tracked",
            DType::I64,
            &[],
            12_345_678_901i64.to_le_bytes().to_vec(),
        ),
        t(
            "neck.i32",
            DType::I32,
            &[2],
            le([-7i32, 9]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "neck.i16",
            DType::I16,
            &[2],
            le([-300i16, 300]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect()),
        ),
        t("neck.i8", DType::I8, &[2], vec![0x80, 0x7f]),
        t("head.u8", DType::U8, &[3], vec![0, 128, 255]),
        t("head.mask", DType::Bool, &[2], vec![1, 0]),
        t("head.empty", DType::F32, &[0, 3], Vec::new()),
    ];
    let meta = json!({
        "epoch": 12,
        "dataset_meta": {"classes": ["person", "car"]},
        "mmcompat": {"converted_from": "kd_nano_rtmdet_neck.pth", "dropped": ["teacher.x"]},
        "lr": 0.01,
        "flag": true,
        "none": null,
        "big": 1_099_511_627_776u64,
        "negative": -5
    });
    (tensors, meta)
}

/// Our reading of a written file equals the data we wrote.
fn assert_reads_back(ck: &Checkpoint, tensors: &[(String, TensorData<'_>)], section: &str) {
    let s = ck.section(section).unwrap();
    assert_eq!(s.tensors.len(), tensors.len());
    for (name, td) in tensors {
        let t = &s.tensors[name];
        assert_eq!((t.dtype, &t.shape), (td.dtype, &td.shape), "{name}");
        assert_eq!(
            ck.tensor_bytes(t).unwrap().as_ref(),
            td.data.as_ref(),
            "{name}"
        );
    }
}

/// What torch reported (verify_written.py output) equals our data.
fn assert_torch_view(torch: &J, tensors: &[(String, TensorData<'_>)]) {
    let tt = torch["tensors"].as_object().unwrap();
    assert_eq!(tt.len(), tensors.len());
    for (name, td) in tensors {
        let w = &tt[name];
        assert_eq!(w["dtype"], td.dtype.torch_name(), "{name}");
        assert_eq!(w["shape"], json!(td.shape), "{name}");
        assert_eq!(w["values"], J::Array(decode(td.dtype, &td.data)), "{name}");
    }
}

fn run_verify(py: &Path, file: &Path) -> J {
    let out = std::process::Command::new(py)
        .arg(manifest().join("tests/data/verify_written.py"))
        .arg(file)
        .env_remove("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "torch refused {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn writer_output_is_the_committed_torch_verified_file() {
    let (tensors, meta) = written_tensors();
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("w.pth");
    let st = dir.path().join("w.safetensors");
    write_pth(&pth, &tensors, Some(&meta)).unwrap();
    write_safetensors(&st, &tensors, Some(&meta)).unwrap();
    if std::env::var_os("MMCOMPAT_BLESS_WRITTEN").is_some() {
        std::fs::copy(&pth, data("written_by_mmcompat.pth")).unwrap();
        std::fs::copy(&st, data("written_by_mmcompat.safetensors")).unwrap();
        if let Some(py) = venv_python() {
            for f in ["written_by_mmcompat.pth", "written_by_mmcompat.safetensors"] {
                let j = run_verify(&py, &data(f));
                std::fs::write(
                    data(&format!("{f}.torch.json")),
                    serde_json::to_string_pretty(&j).unwrap() + "\n",
                )
                .unwrap();
            }
        }
    }
    // Same bytes as the committed files, so torch's committed verdict applies to this writer.
    assert!(
        std::fs::read(&pth).unwrap() == std::fs::read(data("written_by_mmcompat.pth")).unwrap(),
        "pth bytes changed: re-bless"
    );
    assert!(
        std::fs::read(&st).unwrap()
            == std::fs::read(data("written_by_mmcompat.safetensors")).unwrap(),
        "safetensors bytes changed: re-bless"
    );

    let torch_pth = read_json(&data("written_by_mmcompat.pth.torch.json"));
    assert_torch_view(&torch_pth, &tensors);
    assert_eq!(torch_pth["meta"], meta);
    assert_eq!(torch_pth["top_level_keys"], json!(["meta", "state_dict"]));
    assert_eq!(torch_pth["state_dict_type"], "OrderedDict");
    assert_eq!(torch_pth["mmengine_load_checkpoint_equal"], true);
    let torch_st = read_json(&data("written_by_mmcompat.safetensors.torch.json"));
    assert_torch_view(&torch_st, &tensors);
    assert_eq!(
        torch_st["metadata"]["meta"]
            .as_str()
            .map(|s| serde_json::from_str::<J>(s).unwrap()),
        Some(meta.clone())
    );

    // And our reader reads back what we wrote.
    let ck = Checkpoint::open(&pth).unwrap();
    assert_eq!(ck.format(), Format::TorchZip);
    assert_eq!(ck.meta_json(), meta);
    assert!(ck.opaque_globals().is_empty());
    assert_reads_back(&ck, &tensors, "state_dict");
    let ck = Checkpoint::open(&st).unwrap();
    assert_eq!(ck.format(), Format::Safetensors);
    assert_eq!(ck.meta_json(), meta);
    assert_reads_back(&ck, &tensors, "<root>");
}

#[test]
fn written_files_load_in_real_torch() {
    let Some(py) = venv_python() else { return };
    let (tensors, meta) = written_tensors();
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("live.pth");
    write_pth(&pth, &tensors, Some(&meta)).unwrap();
    let j = run_verify(&py, &pth);
    assert_torch_view(&j, &tensors);
    assert_eq!(j["meta"], meta);
    assert_eq!(j["mmengine_load_checkpoint_equal"], true);
    let st = dir.path().join("live.safetensors");
    write_safetensors(&st, &tensors, Some(&meta)).unwrap();
    assert_torch_view(&run_verify(&py, &st), &tensors);
}

#[test]
fn writer_rejects_inconsistent_tensor_data() {
    let dir = tempfile::tempdir().unwrap();
    let bad = vec![(
        "x".to_string(),
        TensorData::new(DType::F32, vec![3], vec![0u8; 8]),
    )];
    let e = write_pth(dir.path().join("bad.pth"), &bad, None).unwrap_err();
    assert!(e.to_string().contains("needs 12 bytes, got 8"), "{e}");
}
