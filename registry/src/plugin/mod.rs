//! Dynamic adapter plugins: a `.so`/`.dylib`/`.dll` loaded with `libloading` that speaks a small,
//! versioned C ABI. Only bytes cross the boundary (JSON in, JSON out, freed by the side that
//! allocated them), never Rust types: the Rust ABI is unstable between compilations (Bevy removed
//! its dynamic plugins as unsound for that reason, rust-notes.md §4), and `inventory` cannot carry
//! registrations out of a dlopen'ed library.
//!
//! Symbols a plugin exports (generate them with [`declare_adapter_plugin!`](crate::declare_adapter_plugin!)):
//! * `mmcompat_plugin_abi_version() -> u32` — checked FIRST; must equal [`ABI_VERSION`];
//! * `mmcompat_plugin_describe() -> *const c_char` — NUL-terminated JSON
//!   `{"name","scope","version","description"}`, owned by the plugin, valid forever;
//! * `mmcompat_plugin_detect(req *const u8, len usize, out *mut Buf) -> i32` — `req` is JSON
//!   `{"view": CheckpointView, "config": value|null}`, `out` receives a `Confidence` as JSON;
//! * `mmcompat_plugin_plan(req *const u8, len usize, out *mut Buf) -> i32` — `req` is JSON
//!   `{"view": CheckpointView, "options": AdapterOptions}`, `out` receives a `Plan` as JSON;
//! * `mmcompat_plugin_free(buf Buf)` — frees a `Buf` the plugin returned.
//!
//! Return codes: [`RC_OK`]; [`RC_ERROR`] (`out` holds the error text); [`RC_PANIC`] (the plugin
//! panicked, caught by `catch_unwind`; `out` holds the panic message); [`RC_BAD_ARGS`] (null
//! pointers). A loaded library is never unloaded (dlclose is unreliable: musl ignores it, macOS
//! ignores it with TLS), so the host leaks it on purpose.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapter::{
    AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence, Plan,
};

/// The ABI this host speaks. Bump on any change to the symbols, `Buf` or the JSON shapes.
pub const ABI_VERSION: u32 = 1;

pub const RC_OK: i32 = 0;
pub const RC_ERROR: i32 = 1;
pub const RC_PANIC: i32 = 2;
pub const RC_BAD_ARGS: i32 = 3;

/// Bytes allocated by the plugin and handed to the host (a `Vec<u8>`'s raw parts).
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buf {
    pub const fn empty() -> Buf {
        Buf {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    /// Hands a vector's memory over (to be given back to [`Buf::into_vec`] on the same side).
    pub fn from_vec(v: Vec<u8>) -> Buf {
        let mut v = std::mem::ManuallyDrop::new(v);
        Buf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// # Safety
    /// `self` must come from [`Buf::from_vec`] in this same binary, and not be used again.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller guarantees these are the raw parts of a Vec<u8> from this binary.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }
}

/// What `describe` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub scope: String,
    /// The plugin crate's version (diagnostics only; compatibility is [`ABI_VERSION`]).
    pub version: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Serialize, Deserialize)]
pub struct DetectRequest {
    pub view: CheckpointView,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
pub struct PlanRequest {
    pub view: CheckpointView,
    #[serde(default)]
    pub options: AdapterOptions,
}

/// The version check, separate so that it is testable without a second library.
pub fn check_abi_version(found: u32, path: &Path) -> Result<(), AdapterError> {
    if found == ABI_VERSION {
        Ok(())
    } else {
        Err(AdapterError::Plugin {
            path: path.to_path_buf(),
            detail: format!(
                "plugin ABI version mismatch: found {found}, expected {ABI_VERSION}; rebuild the plugin against this \
                 mmcompat's `mmcompat-registry` (declare_adapter_plugin!)"
            ),
        })
    }
}

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type DescribeFn = unsafe extern "C" fn() -> *const c_char;
type CallFn = unsafe extern "C" fn(*const u8, usize, *mut Buf) -> i32;
type FreeFn = unsafe extern "C" fn(Buf);

/// A loaded plugin, usable as any other adapter.
#[derive(Debug, Clone)]
pub struct DynamicAdapter {
    path: PathBuf,
    info: PluginInfo,
    detect_fn: CallFn,
    plan_fn: CallFn,
    free_fn: FreeFn,
}

fn plugin_err(path: &Path, detail: impl Into<String>) -> AdapterError {
    AdapterError::Plugin {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Loads a plugin: checks the ABI version before touching anything else, reads its description,
/// and leaks the library (never unloaded).
pub fn load_plugin(path: impl AsRef<Path>) -> Result<DynamicAdapter, AdapterError> {
    let path = path.as_ref();
    // SAFETY: loading a library runs its initialisers; loading a plugin means trusting it, the
    // same as running it. Nothing else can be checked before this point.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| plugin_err(path, format!("cannot load: {e}")))?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY (all `get`s): the symbol types are those of the documented ABI; a library exporting
    // the names with other types is not an mmcompat plugin, which we cannot detect further.
    let version: AbiVersionFn =
        unsafe { lib.get::<AbiVersionFn>(b"mmcompat_plugin_abi_version\0") }
            .map(|s| *s)
            .map_err(|e| {
                plugin_err(
                    path,
                    format!("not an mmcompat plugin (no mmcompat_plugin_abi_version): {e}"),
                )
            })?;
    // SAFETY: a plain function without arguments, per the ABI.
    check_abi_version(unsafe { version() }, path)?;
    let symbol = |name: &[u8]| -> Result<*const (), AdapterError> {
        // SAFETY: see above; we only read the address here.
        unsafe { lib.get::<*const ()>(name) }
            .map(|s| *s)
            .map_err(|e| {
                plugin_err(
                    path,
                    format!(
                        "missing symbol {}: {e}",
                        String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name))
                    ),
                )
            })
    };
    let describe = symbol(b"mmcompat_plugin_describe\0")?;
    let detect = symbol(b"mmcompat_plugin_detect\0")?;
    let plan = symbol(b"mmcompat_plugin_plan\0")?;
    let free = symbol(b"mmcompat_plugin_free\0")?;
    // SAFETY: these addresses are the exported functions with the ABI's signatures.
    let (describe, detect_fn, plan_fn, free_fn) = unsafe {
        (
            std::mem::transmute::<*const (), DescribeFn>(describe),
            std::mem::transmute::<*const (), CallFn>(detect),
            std::mem::transmute::<*const (), CallFn>(plan),
            std::mem::transmute::<*const (), FreeFn>(free),
        )
    };
    // SAFETY: per the ABI, a NUL-terminated string owned by the plugin for its whole life.
    let desc = unsafe { describe() };
    if desc.is_null() {
        return Err(plugin_err(path, "mmcompat_plugin_describe returned null"));
    }
    // SAFETY: non-null, NUL-terminated per the ABI.
    let text = unsafe { CStr::from_ptr(desc) }
        .to_string_lossy()
        .into_owned();
    let info: PluginInfo = serde_json::from_str(&text)
        .map_err(|e| plugin_err(path, format!("bad describe JSON {text:?}: {e}")))?;
    tracing::debug!(path = %path.display(), name = %info.name, version = %info.version, "loaded adapter plugin");
    Ok(DynamicAdapter {
        path: path.to_path_buf(),
        info,
        detect_fn,
        plan_fn,
        free_fn,
    })
}

impl DynamicAdapter {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call(&self, f: CallFn, what: &str, request: &[u8]) -> Result<Vec<u8>, AdapterError> {
        let mut out = Buf::empty();
        // SAFETY: request is a valid slice for the call; out is a valid Buf to write into.
        let rc = unsafe { f(request.as_ptr(), request.len(), &mut out) };
        let bytes = if out.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: out.ptr/len describe bytes the plugin allocated and keeps alive until free.
            let copy = unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec();
            // SAFETY: handing the Buf back to the side that allocated it, exactly once.
            unsafe { (self.free_fn)(out) };
            copy
        };
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match rc {
            RC_OK => Ok(bytes),
            RC_PANIC => Err(plugin_err(
                &self.path,
                format!("{} panicked in {what}: {}", self.info.name, text()),
            )),
            RC_BAD_ARGS => Err(plugin_err(
                &self.path,
                format!("{what}: the plugin rejected its arguments"),
            )),
            _ => Err(plugin_err(
                &self.path,
                format!("{what} failed ({rc}): {}", text()),
            )),
        }
    }
}

impl CheckpointAdapter for DynamicAdapter {
    fn name(&self) -> &str {
        &self.info.name
    }

    fn scope(&self) -> &str {
        &self.info.scope
    }

    fn description(&self) -> &str {
        &self.info.description
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let req = serde_json::to_vec(&DetectRequest {
            view: view.clone(),
            config: config.cloned(),
        })
        .unwrap_or_default();
        match self.call(self.detect_fn, "detect", &req) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                Confidence::none(format!(
                    "plugin {} returned bad detect JSON: {e}",
                    self.info.name
                ))
            }),
            Err(e) => Confidence::none(e.to_string()),
        }
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let req = serde_json::to_vec(&PlanRequest {
            view: view.clone(),
            options: options.clone(),
        })
        .map_err(|e| plugin_err(&self.path, e.to_string()))?;
        let bytes = self.call(self.plan_fn, "plan", &req)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| plugin_err(&self.path, format!("bad plan JSON: {e}")))
    }
}

/// Plugin-side helpers used by [`declare_adapter_plugin!`](crate::declare_adapter_plugin!) (compiled into the plugin).
pub mod sdk {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::{Buf, DetectRequest, PlanRequest, RC_BAD_ARGS, RC_ERROR, RC_OK, RC_PANIC};
    use crate::adapter::CheckpointAdapter;

    fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned())
    }

    /// Runs `f` with panics caught, writes its bytes (or the error/panic text) into `out`.
    ///
    /// # Safety
    /// `input` must point to `len` readable bytes (or be null with len 0); `out` must be a
    /// valid pointer to a `Buf`.
    pub unsafe fn guarded(
        input: *const u8,
        len: usize,
        out: *mut Buf,
        f: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> i32 {
        if out.is_null() || (input.is_null() && len != 0) {
            return RC_BAD_ARGS;
        }
        let bytes: &[u8] = if input.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees `len` readable bytes at `input`.
            unsafe { std::slice::from_raw_parts(input, len) }
        };
        let (rc, data) = match catch_unwind(AssertUnwindSafe(|| f(bytes))) {
            Ok(Ok(d)) => (RC_OK, d),
            Ok(Err(e)) => (RC_ERROR, e.into_bytes()),
            Err(p) => (RC_PANIC, panic_message(p.as_ref()).into_bytes()),
        };
        // SAFETY: out is non-null and valid per the caller.
        unsafe { out.write(Buf::from_vec(data)) };
        rc
    }

    pub fn detect<T: CheckpointAdapter + Default>(input: &[u8]) -> Result<Vec<u8>, String> {
        let req: DetectRequest =
            serde_json::from_slice(input).map_err(|e| format!("bad detect request: {e}"))?;
        let c = T::default().detect(&req.view, req.config.as_ref());
        serde_json::to_vec(&c).map_err(|e| e.to_string())
    }

    pub fn plan<T: CheckpointAdapter + Default>(input: &[u8]) -> Result<Vec<u8>, String> {
        let req: PlanRequest =
            serde_json::from_slice(input).map_err(|e| format!("bad plan request: {e}"))?;
        let plan = T::default()
            .plan(&req.view, &req.options)
            .map_err(|e| e.to_string())?;
        serde_json::to_vec(&plan).map_err(|e| e.to_string())
    }

    /// The NUL-terminated describe JSON for `T`.
    pub fn describe_json<T: CheckpointAdapter + Default>(version: &str) -> std::ffi::CString {
        let a = T::default();
        let info = super::PluginInfo {
            name: a.name().to_owned(),
            scope: a.scope().to_owned(),
            version: version.to_owned(),
            description: a.description().to_owned(),
        };
        let json = serde_json::to_string(&info)
            .unwrap_or_default()
            .replace('\0', "");
        std::ffi::CString::new(json).unwrap_or_default()
    }
}

/// Exports the C ABI for an adapter type (`Default + CheckpointAdapter`) from a `cdylib`:
/// `mmcompat_registry::declare_adapter_plugin!(MyAdapter);`
#[macro_export]
macro_rules! declare_adapter_plugin {
    ($ty:ty) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn mmcompat_plugin_abi_version() -> u32 {
            $crate::plugin::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn mmcompat_plugin_describe() -> *const ::std::ffi::c_char {
            static DESCRIBE: ::std::sync::OnceLock<::std::ffi::CString> =
                ::std::sync::OnceLock::new();
            let s = match ::std::panic::catch_unwind(|| {
                DESCRIBE.get_or_init(|| {
                    $crate::plugin::sdk::describe_json::<$ty>(env!("CARGO_PKG_VERSION"))
                })
            }) {
                Ok(s) => s,
                Err(_) => return ::std::ptr::null(),
            };
            s.as_ptr()
        }

        /// # Safety
        /// See `mmcompat_registry::plugin` (the C ABI).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn mmcompat_plugin_detect(
            input: *const u8,
            len: usize,
            out: *mut $crate::plugin::Buf,
        ) -> i32 {
            unsafe {
                $crate::plugin::sdk::guarded(input, len, out, $crate::plugin::sdk::detect::<$ty>)
            }
        }

        /// # Safety
        /// See `mmcompat_registry::plugin` (the C ABI).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn mmcompat_plugin_plan(
            input: *const u8,
            len: usize,
            out: *mut $crate::plugin::Buf,
        ) -> i32 {
            unsafe {
                $crate::plugin::sdk::guarded(input, len, out, $crate::plugin::sdk::plan::<$ty>)
            }
        }

        /// # Safety
        /// `buf` must be a `Buf` returned by this plugin, freed once.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn mmcompat_plugin_free(buf: $crate::plugin::Buf) {
            let _ = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| unsafe {
                drop(buf.into_vec())
            }));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_version_mismatch_says_found_and_expected() {
        let err = check_abi_version(ABI_VERSION + 1, Path::new("/x/libp.so"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "found {}, expected {}",
                ABI_VERSION + 1,
                ABI_VERSION
            )),
            "{err}"
        );
        assert!(err.contains("/x/libp.so"), "{err}");
        assert!(check_abi_version(ABI_VERSION, Path::new("p")).is_ok());
    }

    #[test]
    fn loading_a_non_plugin_is_an_error() {
        let err = load_plugin("/nonexistent/libnothing.so")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot load"), "{err}");
    }

    #[test]
    fn guarded_catches_panics_and_errors() {
        let mut out = Buf::empty();
        // SAFETY: valid (null, 0) input and a valid out pointer.
        let rc = unsafe { sdk::guarded(std::ptr::null(), 0, &mut out, |_| panic!("boom")) };
        assert_eq!(rc, RC_PANIC);
        // SAFETY: made by Buf::from_vec in this binary.
        assert_eq!(unsafe { out.into_vec() }, b"boom");
        let mut out = Buf::empty();
        // SAFETY: as above.
        let rc = unsafe {
            sdk::guarded(b"x".as_ptr(), 1, &mut out, |b| {
                Err(format!("bad {}", b.len()))
            })
        };
        assert_eq!(rc, RC_ERROR);
        // SAFETY: as above.
        assert_eq!(unsafe { out.into_vec() }, b"bad 1");
    }
}
