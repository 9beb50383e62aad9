//! Device selection and CUDA start-up.
//!
//! The linker's `--as-needed` drops `libtorch_cuda.so` because nothing references its symbols
//! directly, so a CUDA libtorch would look CPU-only. We dlopen it (RTLD_GLOBAL, never closed) from
//! libtorch's library folder at start-up when it exists; its static initialisers register the CUDA
//! backend with ATen. A CPU-only libtorch simply has no such file.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The libtorch library folder this binary was built against (embedded by build.rs).
pub const LIBTORCH_LIB: &str = env!("MMCOMPAT_LIBTORCH_LIB");

/// Result of trying to load libtorch's CUDA backend.
#[derive(Debug, Clone)]
pub enum CudaBackend {
    /// `libtorch_cuda.so` was loaded from this path.
    Loaded(PathBuf),
    /// No `libtorch_cuda.so` next to libtorch (a CPU-only libtorch).
    Absent,
    /// The library exists but failed to load (usually a missing driver: libcuda.so.1).
    Failed(String),
}

static CUDA: OnceLock<CudaBackend> = OnceLock::new();

/// Loads `libtorch_cuda.so` once, if present. Cheap after the first call.
pub fn init_cuda_backend() -> &'static CudaBackend {
    CUDA.get_or_init(|| {
        let mut candidates = Vec::new();
        if let Ok(dir) = std::env::var("LIBTORCH") {
            candidates.push(PathBuf::from(dir).join("lib/libtorch_cuda.so"));
        }
        if !LIBTORCH_LIB.is_empty() {
            candidates.push(PathBuf::from(LIBTORCH_LIB).join("libtorch_cuda.so"));
        }
        for path in candidates {
            if !path.exists() {
                continue;
            }
            // SAFETY: loading libtorch's own CUDA backend runs its static initialisers, which is
            // exactly what linking it would do. The handle is leaked: it is never unloaded.
            let lib = unsafe {
                libloading::os::unix::Library::open(
                    Some(&path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            };
            return match lib {
                Ok(lib) => {
                    std::mem::forget(lib);
                    tracing::debug!(path = %path.display(), "loaded libtorch CUDA backend");
                    CudaBackend::Loaded(path)
                }
                Err(e) => CudaBackend::Failed(format!("{}: {e}", path.display())),
            };
        }
        CudaBackend::Absent
    })
}

/// Why a device string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: use cpu, cuda or cuda:N")]
    Syntax(String),
    #[error(
        "device `{requested}`: this libtorch has no CUDA support (no libtorch_cuda.so next to {lib}); \
         install a CUDA build of torch 2.11.0 and point LIBTORCH at it, or use --device cpu"
    )]
    NoCudaLibtorch { requested: String, lib: String },
    #[error(
        "device `{requested}`: libtorch's CUDA backend failed to load ({reason}); usually the NVIDIA \
         driver (libcuda.so.1) is missing or too old"
    )]
    CudaBackendFailed { requested: String, reason: String },
    #[error(
        "device `{requested}`: the CUDA libtorch is loaded but the NVIDIA driver is missing \
         (libcuda.so.1 cannot be loaded: {reason})"
    )]
    NoDriver { requested: String, reason: String },
    #[error(
        "device `{requested}`: the CUDA libtorch is loaded but no usable GPU was found (driver \
         present but no device visible: check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    )]
    NoGpu { requested: String },
    #[error("device `{requested}`: only {count} CUDA device(s) visible (indices 0..{count})")]
    NoSuchGpu { requested: String, count: usize },
}

/// Parses `cpu`, `cuda` or `cuda:N` and checks the device can be used. CUDA needs
/// `libtorch_cuda.so` (loaded here through [`init_cuda_backend`]), a driver and a GPU; each missing
/// piece is its own error.
pub fn parse_device(spec: &str) -> Result<tch::Device, DeviceError> {
    let s = spec.trim().to_ascii_lowercase();
    let index = match s.as_str() {
        "cpu" => return Ok(tch::Device::Cpu),
        "cuda" | "gpu" => 0usize,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => return Err(DeviceError::Syntax(spec.to_string())),
        },
    };
    match init_cuda_backend() {
        CudaBackend::Absent => {
            return Err(DeviceError::NoCudaLibtorch {
                requested: spec.to_string(),
                lib: if LIBTORCH_LIB.is_empty() {
                    "libtorch".into()
                } else {
                    LIBTORCH_LIB.into()
                },
            })
        }
        CudaBackend::Failed(reason) => {
            return Err(DeviceError::CudaBackendFailed {
                requested: spec.to_string(),
                reason: reason.clone(),
            })
        }
        CudaBackend::Loaded(_) => {}
    }
    if !tch::Cuda::is_available() {
        // Tell a missing driver apart from a machine without a (visible) GPU.
        // SAFETY: loading the driver library runs no code of ours; it is closed right away.
        if let Err(e) = unsafe { libloading::Library::new("libcuda.so.1") } {
            return Err(DeviceError::NoDriver {
                requested: spec.to_string(),
                reason: e.to_string(),
            });
        }
        return Err(DeviceError::NoGpu {
            requested: spec.to_string(),
        });
    }
    let count = tch::Cuda::device_count().max(0) as usize;
    if index >= count {
        return Err(DeviceError::NoSuchGpu {
            requested: spec.to_string(),
            count,
        });
    }
    Ok(tch::Device::Cuda(index))
}
