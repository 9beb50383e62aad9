//! `mmcompat._mmcompat`: the native half of the `mmcompat` Python package (pyo3, abi3 3.9+).
//!
//! Thin on purpose: every behaviour is the library's ([`mmcompat::Inferencer`], the registry's
//! checkpoint reader, inspect report and converter), so Python gets exactly what the CLI gives:
//! `Detector.detect` returns the record `mmcompat detect --json` prints (built by the same
//! [`mmcompat::inferencer::detections_record`]), `inspect` the `inspect --json` object, `convert`
//! the report `convert` prints. Errors become `mmcompat.MmcompatError` subclasses carrying the
//! library's whole message (file, key, "did you mean ...").
//!
//! Inference runs with the GIL released (`Python::detach`): an [`Inferencer`] is `Sync`, so
//! Python threads sharing one `Detector` run in parallel.

mod errors;

use std::path::PathBuf;
use std::sync::Arc;

use mmcompat::inferencer::{detections_record, Detection, InferError, Inferencer};
use mmcompat::preprocess::{decode_image_bytes_with, decode_image_file_with, BgrImage};
use mmcompat::registry::adapter::{AdapterSet, EmaChoice};
use mmcompat::registry::checkpoint::{inspect::InspectReport, Checkpoint};
use mmcompat::registry::config::{Config, ConfigRoots};
use mmcompat::registry::convert::ConvertOptions;
use mmcompat::registry::dtype::DType;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView};

use errors::{checkpoint_err, config_err, convert_err, infer_err, register, ImageError};

/// `json.loads(text)`: the records are built as JSON by the library, so the Python objects are
/// exactly what parsing the CLI's output gives (same keys, order and float values).
fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// Config roots: `{"mmdet": "/path/to/configs", ...}` (as `--config-root PKG=DIR`), else what
/// the CLI uses without flags (`MMCOMPAT_CONFIG_ROOTS`, then the packages of `python3`).
fn roots_from(roots: Option<Vec<(String, PathBuf)>>) -> PyResult<ConfigRoots> {
    match roots {
        Some(list) => {
            let mut r = ConfigRoots::new();
            for (pkg, dir) in list {
                r.add(&pkg, dir);
            }
            Ok(r)
        }
        None => Ok(ConfigRoots::new()
            .with_env()
            .map_err(|e| config_err(e.to_string()))?
            .discover_python()),
    }
}

fn adapter_set(files: &[PathBuf]) -> PyResult<AdapterSet> {
    mmcompat::builtin_adapters();
    AdapterSet::with_user_adapters(files).map_err(|e| {
        checkpoint_err(format!(
            "loading the adapters (built-ins, $XDG_CONFIG_HOME/mmcompat/adapters, adapter_files): {e}"
        ))
    })
}

/// One image handed to `detect`, read while the GIL is held (Python objects cannot be touched
/// once it is released).
enum Input {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Array(BgrImage),
}

impl Input {
    /// `str` / `os.PathLike` → a file; `bytes` / `bytearray` / `memoryview` → an encoded image
    /// (decoded like `cv2.imdecode`); anything with `shape`/`dtype` → an HxWx3 uint8 array in BGR
    /// order, as mmdet's `inference_detector` takes ndarrays.
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Input> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Input::Bytes(b.as_bytes().to_vec()));
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return Ok(Input::Bytes(b.to_vec()));
        }
        if obj.hasattr("shape")? && obj.hasattr("dtype")? {
            return array_image(obj).map(Input::Array);
        }
        if obj.cast::<PyMemoryView>().is_ok() {
            let bytes = obj.call_method0("tobytes")?;
            return Ok(Input::Bytes(bytes.cast::<PyBytes>()?.as_bytes().to_vec()));
        }
        match obj.extract::<PathBuf>() {
            Ok(p) => Ok(Input::Path(p)),
            Err(_) => Err(PyTypeError::new_err(format!(
                "detect() takes an image path (str or os.PathLike), encoded image bytes, or an \
                 HxWx3 uint8 numpy array in BGR order; got {}",
                obj.get_type().name()?
            ))),
        }
    }

    /// The record's `image`: the path as given, `-` for bytes and arrays (as `mmcompat serve`
    /// names a raw request body).
    fn name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Bytes(_) | Input::Array(_) => "-".into(),
        }
    }
}

/// An HxWx3 uint8 array (C order or not: `tobytes()` gives C order) as a [`BgrImage`].
fn array_image(obj: &Bound<'_, PyAny>) -> PyResult<BgrImage> {
    let dtype = obj.getattr("dtype")?.str()?.to_string();
    let shape: Vec<usize> = obj.getattr("shape")?.extract()?;
    if dtype != "uint8" || shape.len() != 3 || shape[2] != 3 {
        return Err(ImageError::new_err(format!(
            "an image array must be HxWx3 uint8 in BGR order (what cv2.imread returns); got \
             shape {shape:?} dtype {dtype}. Convert with `np.ascontiguousarray(img[..., ::-1])` \
             for RGB, `img.astype(np.uint8)` for other dtypes"
        )));
    }
    let bytes = obj.call_method0("tobytes")?;
    Ok(BgrImage {
        height: shape[0],
        width: shape[1],
        data: bytes.cast::<PyBytes>()?.as_bytes().to_vec(),
    })
}

/// A loaded detector: `mmcompat.Detector(config=None, weights=..., ...)`.
#[pyclass(module = "mmcompat", frozen)]
struct Detector {
    inferencer: Arc<Inferencer>,
    score_thr: Option<f32>,
}

impl Detector {
    /// Decode (unless already decoded), run, filter `score > score_thr`: what `detect` does per
    /// image (src/inferencer/detect.rs `detect_one`). Runs without the GIL.
    fn run_one(&self, input: &Input) -> Result<String, InferError> {
        let limits = self.inferencer.decode_limits();
        let name = input.name();
        let decoded;
        let img = match input {
            Input::Path(p) => {
                decoded =
                    decode_image_file_with(p, limits).map_err(|source| InferError::Preprocess {
                        image: p.clone(),
                        source: Box::new(source),
                    })?;
                &decoded
            }
            Input::Bytes(b) => {
                decoded = decode_image_bytes_with(b, "<bytes>", limits).map_err(|source| {
                    InferError::Preprocess {
                        image: PathBuf::from("<bytes>"),
                        source: Box::new(source),
                    }
                })?;
                &decoded
            }
            Input::Array(img) => img,
        };
        let dets: Vec<Detection> = self
            .inferencer
            .infer(img)?
            .into_iter()
            .filter(|d| self.score_thr.is_none_or(|t| d.score > t))
            .collect();
        Ok(detections_record(&name, img.width, img.height, &dets))
    }
}

#[pymethods]
impl Detector {
    /// Builds the model and loads the weights (as `mmcompat detect` does with the same flags).
    ///
    /// config: the model config (.py/.toml/.json); None: the training config the checkpoint
    ///   carries (`meta.cfg`). weights: the checkpoint. scope: default scope (e.g. "mmyolo");
    ///   None: the config's default_scope. device: "cpu", "cuda", "cuda:N". adapters: adapter
    ///   names forcing the chain (as `--adapter NAME`); empty: chosen automatically.
    ///   adapter_files: extra adapters (as `--adapters FILE`). score_thr: keep `score > thr`
    ///   (as `--score-thr`). config_roots: {"mmdet": DIR, ...} (as `--config-root PKG=DIR`).
    ///   adapter_options: {"yolov7.variant": "yolov7-tiny", ...} (as `--adapter-option K=V`).
    #[new]
    #[pyo3(signature = (config=None, weights=None, scope=None, device="cpu", adapters=Vec::new(),
        score_thr=None, *, adapter_files=Vec::new(), config_roots=None, strict=true,
        half=false, fold_bn=false, adapter_options=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        config: Option<PathBuf>,
        weights: Option<PathBuf>,
        scope: Option<String>,
        device: &str,
        adapters: Vec<String>,
        score_thr: Option<f32>,
        adapter_files: Vec<PathBuf>,
        config_roots: Option<std::collections::BTreeMap<String, PathBuf>>,
        strict: bool,
        half: bool,
        fold_bn: bool,
        adapter_options: Option<std::collections::BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let Some(weights) = weights else {
            return Err(PyTypeError::new_err(
                "Detector() needs weights=PATH (the checkpoint, .pth or .safetensors)",
            ));
        };
        let roots = roots_from(config_roots.map(|m| m.into_iter().collect()))?;
        let set = adapter_set(&adapter_files)?;
        let device = device.to_string();
        let inferencer = py.detach(move || -> Result<Inferencer, PyErrState> {
            let mut b = Inferencer::builder()
                .weights(&weights)
                .device(device)
                .strict(strict)
                .half(half)
                .fold_bn(fold_bn)
                .adapter_chain(adapters)
                .adapter_options(mmcompat::registry::adapter::AdapterOptions {
                    extra: adapter_options.unwrap_or_default(),
                    ..Default::default()
                })
                .adapters(set);
            b = match config {
                Some(c) => b.config(c),
                // As `detect` without --config (src/cli/cfg.rs `detect_config`).
                None => {
                    let (cfg, _key) = Config::from_checkpoint(&weights, &roots)
                        .map_err(|e| PyErrState::Config(e.to_string()))?;
                    b.loaded_config(cfg)
                }
            };
            if let Some(s) = scope {
                b = b.scope(s);
            }
            b.config_roots(roots).build().map_err(PyErrState::Infer)
        });
        let inferencer = inferencer.map_err(PyErrState::into_py_err)?;
        Ok(Detector {
            inferencer: Arc::new(inferencer),
            score_thr,
        })
    }

    /// Detections of one image (path, encoded bytes, or HxWx3 uint8 BGR array): the dict
    /// `mmcompat detect --json` prints for it: {"image", "width", "height", "detections":
    /// [{"bbox": [x1, y1, x2, y2], "score", "label", "class"}, ...]}, by descending score.
    fn detect<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let input = Input::extract(image)?;
        let record = py
            .detach(|| self.run_one(&input))
            .map_err(|e| infer_err(&e))?;
        json_to_py(py, &record)
    }

    /// `detect` over a list, one image after another as mmdet's `inference_detector` does with a
    /// list (`mmdet/apis/inference.py`), so each record equals `detect`'s. Raises on the first
    /// image that fails (the exception names it).
    fn detect_batch<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let inputs = images
            .try_iter()?
            .map(|i| Input::extract(&i?))
            .collect::<PyResult<Vec<_>>>()?;
        let records = py
            .detach(|| {
                inputs
                    .iter()
                    .map(|i| self.run_one(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| infer_err(&e))?;
        let out = PyList::empty(py);
        for r in records {
            out.append(json_to_py(py, &r)?)?;
        }
        Ok(out)
    }

    /// The class names, index = label.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inferencer.class_names().to_vec()
    }

    /// The adapter chain that loaded the weights.
    #[getter]
    fn adapters(&self) -> Vec<String> {
        self.inferencer.adapters().to_vec()
    }

    /// The scope the model was built in.
    #[getter]
    fn scope(&self) -> String {
        self.inferencer.scope().to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "mmcompat.Detector(scope={:?}, classes={}, adapters={:?}, device={:?})",
            self.inferencer.scope(),
            self.inferencer.class_names().len(),
            self.inferencer.adapters(),
            self.inferencer.device()
        )
    }
}

/// An error made without the GIL, turned into a Python exception once it is back.
enum PyErrState {
    Config(String),
    Infer(InferError),
}

impl PyErrState {
    fn into_py_err(self) -> PyErr {
        match self {
            PyErrState::Config(m) => config_err(m),
            PyErrState::Infer(e) => infer_err(&e),
        }
    }
}

/// `mmcompat inspect --json PATH` as a dict: format, sections, tensor counts and dtypes, meta,
/// the adapters that recognise the file. Nothing in the file is executed.
#[pyfunction]
#[pyo3(signature = (path, *, adapter_files=Vec::new()))]
fn inspect<'py>(
    py: Python<'py>,
    path: PathBuf,
    adapter_files: Vec<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let set = adapter_set(&adapter_files)?;
    let json = py
        .detach(|| -> Result<String, String> {
            let ck = Checkpoint::open(&path).map_err(|e| e.to_string())?;
            let mut report = InspectReport::from_checkpoint(&ck, path.display());
            report.detect_adapters(&ck, &set);
            Ok(report.to_json().to_string())
        })
        .map_err(checkpoint_err)?;
    json_to_py(py, &json)
}

/// `mmcompat convert SRC -o DST`: a clean checkpoint (`.pth` loading with
/// `torch.load(weights_only=True)`, or `.safetensors`), e.g. the student of a distillation
/// checkpoint. Returns the report `convert` prints.
#[pyfunction]
#[pyo3(signature = (src, dst, *, config=None, adapters=Vec::new(), scope=None, ema=None,
    adapter_files=Vec::new(), config_roots=None, adapter_options=None))]
#[allow(clippy::too_many_arguments)]
fn convert(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    config: Option<PathBuf>,
    adapters: Vec<String>,
    scope: Option<String>,
    ema: Option<bool>,
    adapter_files: Vec<PathBuf>,
    config_roots: Option<std::collections::BTreeMap<String, PathBuf>>,
    adapter_options: Option<std::collections::BTreeMap<String, String>>,
) -> PyResult<String> {
    let config = match config {
        Some(p) => {
            let roots = roots_from(config_roots.map(|m| m.into_iter().collect()))?;
            Some(Config::from_file(&p, &roots).map_err(|e| config_err(e.to_string()))?)
        }
        None => None,
    };
    let set = adapter_set(&adapter_files)?;
    let options = ConvertOptions {
        config,
        adapters,
        scope,
        // None: `state_dict` as is; True: `--ema`; False: `--no-ema`.
        ema: match ema {
            None => EmaChoice::Default,
            Some(true) => EmaChoice::Ema,
            Some(false) => EmaChoice::Raw,
        },
        extra: adapter_options.unwrap_or_default(),
        ..Default::default()
    };
    let report = py
        .detach(|| mmcompat::registry::convert::run_with(&src, &dst, &options, &set))
        .map_err(|e| convert_err(&e))?;
    Ok(report.to_string())
}

/// The tensors of one state dict of a checkpoint as numpy arrays, read by the registry's
/// checkpoint reader: a restricted unpickler that executes nothing (a safe `torch.load`).
///
/// section: "state_dict", "ema_state_dict", "model", "<root>" (a bare state dict or a
/// safetensors file); None: the first the file has, in that order. Arrays are writable copies
/// in the tensor's dtype, except bfloat16, which numpy lacks: those come as float32 (exact:
/// every bfloat16 is a float32 with the low 16 bits zero).
#[pyfunction]
#[pyo3(signature = (path, section=None))]
fn load_state_dict<'py>(
    py: Python<'py>,
    path: PathBuf,
    section: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let tensors = py
        .detach(|| read_section(&path, section.as_deref()))
        .map_err(checkpoint_err)?;
    let np = py.import("numpy")?;
    let out = PyDict::new(py);
    for (name, dtype, shape, bytes) in tensors {
        let buf = PyByteArray::new(py, &bytes);
        let arr = np
            .call_method1("frombuffer", (buf, dtype))?
            .call_method1("reshape", (shape,))?;
        out.set_item(name, arr)?;
    }
    Ok(out)
}

type Tensors = Vec<(String, &'static str, Vec<usize>, Vec<u8>)>;

/// (name, numpy dtype, shape, little-endian bytes) of every tensor of the section.
fn read_section(path: &std::path::Path, section: Option<&str>) -> Result<Tensors, String> {
    let ck = Checkpoint::open(path).map_err(|e| e.to_string())?;
    let names: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
    let sec = match section {
        Some(s) => ck.section(s).ok_or_else(|| {
            format!(
                "checkpoint {}: no state dict `{s}`; it has {names:?} (pass one of those as section=)",
                path.display()
            )
        })?,
        None => ck.sections().first().ok_or_else(|| {
            format!(
                "checkpoint {}: no state dict found (no `state_dict`, `ema_state_dict` or `model` \
                 key, and the top level is not a dict of tensors); `mmcompat.inspect(path)` shows \
                 what it holds",
                path.display()
            )
        })?,
    };
    let mut out = Vec::with_capacity(sec.tensors.len());
    for (name, t) in &sec.tensors {
        let bytes = ck.tensor_bytes(t).map_err(|e| e.to_string())?;
        let (dtype, bytes) = match t.dtype {
            DType::BF16 => ("<f4", bf16_to_f32_bytes(&bytes)),
            d => (numpy_dtype(d), bytes.into_owned()),
        };
        out.push((name.clone(), dtype, t.shape.clone(), bytes));
    }
    Ok(out)
}

/// numpy's little-endian name of a checkpoint dtype (bfloat16 is converted before).
fn numpy_dtype(d: DType) -> &'static str {
    match d {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::BF16 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::I16 => "<i2",
        DType::I8 => "i1",
        DType::U8 => "u1",
        DType::Bool => "?",
    }
}

/// bfloat16 is the high half of a float32: shifting the bits up is exact.
fn bf16_to_f32_bytes(b: &[u8]) -> Vec<u8> {
    b.chunks_exact(2)
        .flat_map(|c| (u32::from(u16::from_le_bytes([c[0], c[1]])) << 16).to_le_bytes())
        .collect()
}

#[pymodule]
fn _mmcompat(m: &Bound<'_, PyModule>) -> PyResult<()> {
    register(m)?;
    m.add_class::<Detector>()?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(load_state_dict, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
