//! Safe, lazy reading and writing of torch checkpoints, with no Python and no code execution.
//!
//! [`Checkpoint::open`] reads the three formats users have:
//! * **torch-zip** (`torch.save` since torch 1.6): `<root>/data.pkl` + `<root>/data/<key>` records
//!   (`torch/serialization.py: _save`, `caffe2/serialize/inline_container.cc`);
//! * **torch-legacy** (`_use_new_zipfile_serialization=False`, as mmdet's `publish_model.py`
//!   writes model-zoo files): magic number, protocol, sys_info, the main pickle, the storage keys,
//!   then per storage an i64 element count and its bytes (`torch/serialization.py: _legacy_save`);
//! * **safetensors** (header only, through the `safetensors` crate).
//!
//! The file is memory-mapped; opening parses only the pickle (or header) and describes every
//! tensor ([`TensorInfo`]: dtype, shape, strides, offset, storage). Bytes are read on demand by
//! [`Checkpoint::tensor_bytes`], borrowed from the map when the tensor is contiguous, so reading
//! the student of a distillation checkpoint never touches the teacher's pages. Zip records are
//! stored uncompressed by torch; a compressed record (a re-zipped file) is decompressed at open.
//!
//! The pickle is interpreted by [`pickle`], never executed: see that module for what is honoured
//! and which limits apply. REDUCE on a global the reader does not know yields an inert
//! [`Opaque`] value (class name + data); a handful of code-execution callables (`os.system`, ...)
//! make the file fail with [`PickleError::ForbiddenCallable`].
//!
//! **Sections** ([`Checkpoint::sections`]): each top-level key among `state_dict`,
//! `ema_state_dict`, `model` whose value is a dict holding at least one tensor, in the file's key
//! order. When there is no such key and the file holds tensors, the whole top level is a bare
//! state dict and forms one section named [`ROOT_SECTION`] (`"<root>"`); a safetensors file is
//! always that. A section lists the tensors reachable through dicts/lists/tuples with dotted
//! paths ([`Value::tensor_leaves`]); a non-tensor value (rare `_extra_state`) is skipped. Tensors
//! elsewhere (optimizer state) are reachable through [`Checkpoint::all_tensors`].

pub mod error;
pub mod inspect;
pub mod pickle;
pub mod tensor;
pub mod value;
pub mod writer;
mod ziparchive;

pub use error::{CheckpointError, PickleError};
pub use tensor::{StorageInfo, TensorInfo};
pub use value::{Dict, Opaque, Value};
pub use writer::{write_pth, write_safetensors, TensorData};

use crate::dtype::DType;
use indexmap::IndexMap;
use memmap2::Mmap;
use pickle::{unpickle, Limits, PidMode, Unpickled};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// Name of the section formed by a bare state dict (top level of the file).
pub const ROOT_SECTION: &str = "<root>";

/// Top-level keys that hold a state dict, in the order mmengine writes them.
pub const SECTION_KEYS: [&str; 3] = ["state_dict", "ema_state_dict", "model"];

/// Largest compressed zip record we decompress into memory (torch never compresses).
const MAX_DECOMPRESSED_RECORD: u64 = 16 << 30;

/// The container format of a checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    TorchZip,
    TorchLegacy,
    Safetensors,
}

impl Format {
    /// `torch-zip`, `torch-legacy` or `safetensors` (the `inspect --json` spelling).
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::TorchZip => "torch-zip",
            Format::TorchLegacy => "torch-legacy",
            Format::Safetensors => "safetensors",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state dict of the file: key → tensor description, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub tensors: IndexMap<String, TensorInfo>,
}

/// Where one storage's bytes are.
#[derive(Debug)]
enum Record {
    /// A range of the memory map.
    Mapped { start: usize, len: usize },
    /// Decompressed from a compressed zip entry.
    Owned(Vec<u8>),
}

impl Record {
    fn len(&self) -> usize {
        match self {
            Record::Mapped { len, .. } => *len,
            Record::Owned(v) => v.len(),
        }
    }
}

/// An opened checkpoint: its structure parsed, its tensor bytes still on disk.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    format: Format,
    map: Mmap,
    root: Value,
    /// safetensors `__metadata__` as a value (torch files keep `meta` inside `root`).
    st_meta: Option<Value>,
    records: HashMap<String, Record>,
    sections: Vec<Section>,
    opaque_globals: BTreeSet<String>,
    globals: BTreeSet<String>,
}

/// Positioned reads for parsing, so that opening does not fault pages of the map in: a file
/// (pread) or, for [`Checkpoint::from_bytes`], the map itself.
enum Source<'a> {
    #[cfg(unix)]
    File(&'a File, u64),
    Mem(&'a [u8]),
}

impl ziparchive::ReadAt for Source<'_> {
    fn len(&self) -> u64 {
        match self {
            #[cfg(unix)]
            Source::File(_, n) => *n,
            Source::Mem(b) => b.len() as u64,
        }
    }

    fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        if offset.checked_add(len as u64)? > ziparchive::ReadAt::len(self) {
            return None;
        }
        match self {
            #[cfg(unix)]
            Source::File(f, _) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, offset).ok()?;
                Some(buf)
            }
            Source::Mem(b) => b
                .get(offset as usize..offset as usize + len)
                .map(<[u8]>::to_vec),
        }
    }
}

struct Parsed {
    root: Value,
    st_meta: Option<Value>,
    records: HashMap<String, Record>,
    opaque_globals: BTreeSet<String>,
    globals: BTreeSet<String>,
}

impl Checkpoint {
    /// Opens and describes a checkpoint (format detected from the content; a `.safetensors`
    /// extension also selects safetensors). Fails on anything malformed, including a tensor
    /// whose bytes lie outside its storage.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Err(CheckpointError::UnknownFormat {
                path,
                detail: "the file is empty".into(),
            });
        }
        // SAFETY: the map is read-only; like every mmap-based reader (safetensors, numpy) we
        // assume the file is not truncated by another process while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        #[cfg(unix)]
        let source = Source::File(&file, len);
        #[cfg(not(unix))]
        let source = Source::Mem(&map);
        let parsed = Checkpoint::parse(&path, &map, &source)?;
        Checkpoint::assemble(path, map, parsed)
    }

    /// Parses a checkpoint held in memory (`name` is used in messages and for the
    /// `.safetensors` extension rule). The bytes are copied once into an anonymous map.
    pub fn from_bytes(name: impl AsRef<Path>, data: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let path = name.as_ref().to_path_buf();
        if data.is_empty() {
            return Err(CheckpointError::UnknownFormat {
                path,
                detail: "the file is empty".into(),
            });
        }
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let mut anon = memmap2::MmapMut::map_anon(data.len()).map_err(io)?;
        anon.copy_from_slice(data);
        let map = anon.make_read_only().map_err(io)?;
        let parsed = Checkpoint::parse(&path, &map, &Source::Mem(&map))?;
        Checkpoint::assemble(path, map, parsed)
    }

    fn parse(
        path: &Path,
        bytes: &[u8],
        source: &Source<'_>,
    ) -> Result<(Format, Parsed), CheckpointError> {
        let path = path.to_path_buf();
        let is_st_ext = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Ok((Format::TorchZip, parse_zip(&path, bytes, source)?))
        } else if is_st_ext || looks_like_safetensors(bytes) {
            Ok((Format::Safetensors, parse_safetensors(&path, bytes)?))
        } else if bytes.first() == Some(&0x80) {
            Ok((Format::TorchLegacy, parse_legacy(&path, bytes, source)?))
        } else {
            let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(CheckpointError::UnknownFormat {
                path,
                detail: format!("first bytes {head}"),
            })
        }
    }

    fn assemble(
        path: PathBuf,
        map: Mmap,
        (format, parsed): (Format, Parsed),
    ) -> Result<Checkpoint, CheckpointError> {
        let mut ck = Checkpoint {
            path,
            format,
            map,
            root: parsed.root,
            st_meta: parsed.st_meta,
            records: parsed.records,
            sections: Vec::new(),
            opaque_globals: parsed.opaque_globals,
            globals: parsed.globals,
        };
        ck.validate_tensors()?;
        ck.sections = find_sections(&ck.root);
        tracing::debug!(path = %ck.path.display(), format = %ck.format, sections = ck.sections.len(), "opened checkpoint");
        Ok(ck)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The whole unpickled object (for safetensors: a dict name → tensor).
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Keys of the top-level dict as text (empty when the top level is not a dict).
    pub fn top_level_keys(&self) -> Vec<String> {
        match &self.root {
            Value::Dict(d) => d.items.iter().map(|(k, _)| k.key_string()).collect(),
            _ => Vec::new(),
        }
    }

    /// The state dicts of the file (see the module doc for the rule).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The `meta` value: top-level `meta` of a torch file; for safetensors, the `meta` entry of
    /// `__metadata__` parsed as JSON (what [`write_safetensors`] writes), else all
    /// `__metadata__` entries as strings.
    pub fn meta(&self) -> Option<&Value> {
        match self.format {
            Format::Safetensors => self.st_meta.as_ref(),
            _ => self.root.get("meta"),
        }
    }

    /// [`Checkpoint::meta`] as JSON ([`Value::to_json`]); `null` when there is none.
    pub fn meta_json(&self) -> serde_json::Value {
        self.meta()
            .map(Value::to_json)
            .unwrap_or(serde_json::Value::Null)
    }

    /// Sorted `module.name` of every global kept as opaque data (e.g.
    /// `mmengine.logging.history_buffer.HistoryBuffer`, `numpy.core.multiarray.scalar`).
    pub fn opaque_globals(&self) -> &BTreeSet<String> {
        &self.opaque_globals
    }

    /// Sorted `module.name` of every global the pickle names, interpreted or not.
    pub fn globals(&self) -> &BTreeSet<String> {
        &self.globals
    }

    /// Every tensor anywhere in the file with its dotted path (dict keys, list indices), in file
    /// order: e.g. `state_dict.backbone.stem.0.conv.weight`, `optimizer.state.0.exp_avg`.
    pub fn all_tensors(&self) -> Vec<(String, &TensorInfo)> {
        self.root.tensor_leaves()
    }

    /// Contiguous little-endian bytes of a tensor: borrowed from the memory map when the tensor
    /// is contiguous in its storage, gathered into a new buffer when it is a strided view.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<Cow<'_, [u8]>, CheckpointError> {
        let storage = self.storage_bytes(&t.storage.key)?;
        tensor::gather(t, storage).map_err(|e| self.extent_error(&describe(t), t, e))
    }

    /// All bytes of one storage record.
    pub fn storage_bytes(&self, key: &str) -> Result<&[u8], CheckpointError> {
        match self.records.get(key) {
            Some(Record::Mapped { start, len }) => self
                .map
                .get(*start..start.saturating_add(*len))
                .ok_or_else(|| CheckpointError::StorageTooShort {
                    path: self.path.clone(),
                    key: key.to_string(),
                    declared: *len as u64,
                    available: self.map.len().saturating_sub(*start) as u64,
                    place: "memory map".into(),
                }),
            Some(Record::Owned(v)) => Ok(v),
            None => Err(CheckpointError::MissingStorage {
                path: self.path.clone(),
                key: key.to_string(),
                record: format!("data/{key}"),
            }),
        }
    }

    fn extent_error(&self, name: &str, t: &TensorInfo, e: tensor::ExtentError) -> CheckpointError {
        match e {
            tensor::ExtentError::OutOfRange {
                start,
                end,
                available,
            } => CheckpointError::TensorOutOfRange {
                path: self.path.clone(),
                tensor: name.to_string(),
                key: t.storage.key.clone(),
                start,
                end,
                available,
            },
            tensor::ExtentError::Overflow => CheckpointError::BadTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
                detail: format!(
                    "shape {:?} / strides {:?} / offset {} overflow",
                    t.shape, t.strides, t.offset
                ),
            },
        }
    }

    /// Every tensor anywhere in the file must lie inside its storage record.
    fn validate_tensors(&self) -> Result<(), CheckpointError> {
        let mut todo: Vec<(String, &Value)> = vec![(String::new(), &self.root)];
        while let Some((name, v)) = todo.pop() {
            let join = |k: String| {
                if name.is_empty() {
                    k
                } else {
                    format!("{name}.{k}")
                }
            };
            match v {
                Value::Tensor(t) => {
                    let available = self
                        .records
                        .get(&t.storage.key)
                        .map(Record::len)
                        .ok_or_else(|| CheckpointError::MissingStorage {
                            path: self.path.clone(),
                            key: t.storage.key.clone(),
                            record: format!("data/{}", t.storage.key),
                        })? as u64;
                    let (start, end) = t.byte_extent().ok_or_else(|| {
                        self.extent_error(&name, t, tensor::ExtentError::Overflow)
                    })?;
                    if end > available {
                        return Err(self.extent_error(
                            &name,
                            t,
                            tensor::ExtentError::OutOfRange {
                                start,
                                end,
                                available,
                            },
                        ));
                    }
                }
                Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => {
                    for (i, x) in xs.iter().enumerate() {
                        todo.push((join(i.to_string()), x));
                    }
                }
                Value::Dict(d) => {
                    for (k, x) in &d.items {
                        todo.push((join(k.key_string()), x));
                    }
                    if let Some(a) = &d.attributes {
                        todo.push((join("__attributes__".into()), a));
                    }
                }
                Value::Opaque(o) => {
                    for (i, x) in o.args.iter().chain(&o.items).enumerate() {
                        todo.push((join(format!("{}[{i}]", o.name)), x));
                    }
                    for (k, x) in o.dict_items.iter().chain(&o.kwargs) {
                        todo.push((join(k.key_string()), x));
                    }
                    if let Some(s) = &o.state {
                        todo.push((join(format!("{}.__state__", o.name)), s));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn describe(t: &TensorInfo) -> String {
    format!(
        "{} {:?} at offset {} of storage {}",
        t.dtype, t.shape, t.offset, t.storage.key
    )
}

fn find_sections(root: &Value) -> Vec<Section> {
    let Value::Dict(d) = root else {
        return Vec::new();
    };
    let collect = |v: &Value| -> IndexMap<String, TensorInfo> {
        v.tensor_leaves()
            .into_iter()
            .map(|(k, t)| (k, t.clone()))
            .collect()
    };
    let mut out = Vec::new();
    for (k, v) in &d.items {
        let Some(name) = k.as_str().filter(|n| SECTION_KEYS.contains(n)) else {
            continue;
        };
        if matches!(v, Value::Dict(_)) {
            let tensors = collect(v);
            if !tensors.is_empty() {
                out.push(Section {
                    name: name.to_string(),
                    tensors,
                });
            }
        }
    }
    if out.is_empty() {
        let tensors = collect(root);
        if !tensors.is_empty() {
            out.push(Section {
                name: ROOT_SECTION.to_string(),
                tensors,
            });
        }
    }
    out
}

fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(head);
    let n = u64::from_le_bytes(a);
    n >= 2 && n.saturating_add(8) <= bytes.len() as u64 && bytes.get(8) == Some(&b'{')
}

fn pickle_error(path: &Path, part: &str, (offset, error): pickle::Located) -> CheckpointError {
    CheckpointError::Pickle {
        path: path.to_path_buf(),
        part: part.to_string(),
        offset,
        error,
    }
}

// ---------------------------------------------------------------------------------------------
// torch zip format

fn parse_zip(path: &Path, bytes: &[u8], source: &Source<'_>) -> Result<Parsed, CheckpointError> {
    let zip_error = |detail: String| CheckpointError::Zip {
        path: path.to_path_buf(),
        detail,
    };
    let list = ziparchive::entries(source).map_err(zip_error)?;
    let first_name = list.first().map(|e| e.name.clone());
    let mut entries: HashMap<String, Record> = HashMap::new();
    let mut crcs: HashMap<String, u32> = HashMap::new();
    let mut compressed = Vec::new();
    for e in list {
        crcs.insert(e.name.clone(), e.crc32);
        if e.method == 0 {
            if e.compressed_size != e.size {
                return Err(zip_error(format!(
                    "stored record `{}` has different sizes",
                    e.name
                )));
            }
            entries.insert(
                e.name,
                Record::Mapped {
                    start: e.data_start as usize,
                    len: e.size as usize,
                },
            );
        } else {
            compressed.push(e);
        }
    }
    if !compressed.is_empty() {
        // A re-zipped (compressed) checkpoint: let the zip crate inflate those records.
        let zerr = |e: zip::result::ZipError| zip_error(e.to_string());
        let mut ar = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zerr)?;
        for e in compressed {
            if e.size > MAX_DECOMPRESSED_RECORD {
                return Err(zip_error(format!(
                    "compressed record `{}` declares {} bytes (limit {MAX_DECOMPRESSED_RECORD})",
                    e.name, e.size
                )));
            }
            let f = ar.by_name(&e.name).map_err(zerr)?;
            let mut buf = Vec::new();
            f.take(e.size)
                .read_to_end(&mut buf)
                .map_err(|x| zip_error(format!("record `{}`: {x}", e.name)))?;
            entries.insert(e.name, Record::Owned(buf));
        }
    }
    // torch takes the root folder from the first record (`inline_container.cc: init`).
    let first = first_name.ok_or_else(|| zip_error("the archive is empty".into()))?;
    let root = match first.split_once('/') {
        Some((r, _)) => r.to_string(),
        None => {
            return Err(zip_error(format!(
                "file in archive is not in a subdirectory: `{first}`"
            )))
        }
    };
    let pkl_name = format!("{root}/data.pkl");
    // Small records are read with positioned reads, not through the map (see `Source`).
    let record_bytes = |r: &Record| -> Option<Vec<u8>> {
        match r {
            Record::Mapped { start, len } => ziparchive::ReadAt::read(source, *start as u64, *len),
            Record::Owned(v) => Some(v.clone()),
        }
    };
    if let Some(order) = entries
        .get(&format!("{root}/byteorder"))
        .and_then(record_bytes)
    {
        if order.trim_ascii() == b"big" {
            return Err(CheckpointError::UnknownFormat {
                path: path.to_path_buf(),
                detail: "big-endian checkpoint (byteorder = big) is not supported".into(),
            });
        }
    }
    let pkl: Vec<u8> = match entries.get(&pkl_name) {
        Some(r) => record_bytes(r).ok_or_else(|| zip_error(format!("cannot read `{pkl_name}`")))?,
        None => {
            return Err(CheckpointError::MissingRecord {
                path: path.to_path_buf(),
                record: pkl_name,
            })
        }
    };
    if let Some(&want) = crcs.get(&pkl_name) {
        let got = ziparchive::crc32(&pkl);
        if got != want {
            return Err(zip_error(format!("`{pkl_name}` fails its CRC check (0x{got:08x} != 0x{want:08x}): the file is corrupt")));
        }
    }
    let limits = Limits::for_input(pkl.len(), bytes.len() as u64);
    let u: Unpickled =
        unpickle(&pkl, 0, PidMode::Zip, &limits).map_err(|e| pickle_error(path, &pkl_name, e))?;
    let mut records = HashMap::new();
    for s in &u.storages {
        let record = format!("{root}/data/{}", s.key);
        let r = entries
            .remove(&record)
            .ok_or_else(|| CheckpointError::MissingStorage {
                path: path.to_path_buf(),
                key: s.key.clone(),
                record: record.clone(),
            })?;
        let declared = s.numel.saturating_mul(s.dtype.size() as u64);
        if (r.len() as u64) < declared {
            return Err(CheckpointError::StorageTooShort {
                path: path.to_path_buf(),
                key: s.key.clone(),
                declared,
                available: r.len() as u64,
                place: format!("record `{record}`"),
            });
        }
        records.insert(s.key.clone(), r);
    }
    Ok(Parsed {
        root: u.value,
        st_meta: None,
        records,
        opaque_globals: u.opaque_globals,
        globals: u.globals,
    })
}

// ---------------------------------------------------------------------------------------------
// torch legacy format

/// `torch/serialization.py: MAGIC_NUMBER = 0x1950a86a20f9469cfc6c`, as LONG1 bytes.
const LEGACY_MAGIC_LE: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// `torch/serialization.py: PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i64 = 1001;

fn parse_legacy(path: &Path, bytes: &[u8], source: &Source<'_>) -> Result<Parsed, CheckpointError> {
    let limits = Limits::for_input(bytes.len(), bytes.len() as u64);
    let legacy = |offset: usize, detail: String| CheckpointError::Legacy {
        path: path.to_path_buf(),
        offset: offset as u64,
        detail,
    };
    let magic = unpickle(bytes, 0, PidMode::Forbidden, &limits)
        .map_err(|e| pickle_error(path, "legacy magic number", e))?;
    if magic.value != Value::BigInt(LEGACY_MAGIC_LE.to_vec()) {
        return Err(CheckpointError::UnknownFormat {
            path: path.to_path_buf(),
            detail: "a pickle, but not a torch.save file (no torch magic number)".into(),
        });
    }
    let proto = unpickle(bytes, magic.end, PidMode::Forbidden, &limits)
        .map_err(|e| pickle_error(path, "legacy protocol version", e))?;
    if proto.value != Value::Int(LEGACY_PROTOCOL) {
        return Err(legacy(
            magic.end,
            format!(
                "protocol version {:?}, expected {LEGACY_PROTOCOL}",
                proto.value
            ),
        ));
    }
    let sys = unpickle(bytes, proto.end, PidMode::Forbidden, &limits)
        .map_err(|e| pickle_error(path, "legacy sys_info", e))?;
    if sys.value.get("little_endian") == Some(&Value::Bool(false)) {
        return Err(legacy(
            proto.end,
            "written on a big-endian machine; not supported".into(),
        ));
    }
    let main = unpickle(bytes, sys.end, PidMode::Legacy, &limits)
        .map_err(|e| pickle_error(path, "legacy main object", e))?;
    let keys_u = unpickle(bytes, main.end, PidMode::Forbidden, &limits)
        .map_err(|e| pickle_error(path, "legacy storage keys", e))?;
    let keys: Vec<String> = keys_u
        .value
        .as_seq()
        .ok_or_else(|| legacy(main.end, "the storage key list is not a list".into()))?
        .iter()
        .map(|k| k.key_string())
        .collect();
    let by_key: HashMap<&str, &StorageInfo> =
        main.storages.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut pos = keys_u.end;
    let mut records = HashMap::new();
    for key in keys {
        let info = by_key.get(key.as_str()).ok_or_else(|| {
            legacy(
                pos,
                format!("storage `{key}` is listed but no tensor uses it"),
            )
        })?;
        // Positioned read: touching the map here would fault in the neighbouring storage pages.
        let head = ziparchive::ReadAt::read(source, pos as u64, 8)
            .ok_or_else(|| legacy(pos, format!("truncated before the size of storage `{key}`")))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&head);
        let count = i64::from_le_bytes(a);
        let nbytes = u64::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(info.dtype.size() as u64))
            .ok_or_else(|| {
                legacy(
                    pos,
                    format!("storage `{key}` has invalid element count {count}"),
                )
            })?;
        let start = pos + 8;
        let available = (bytes.len() - start) as u64;
        if nbytes > available {
            return Err(CheckpointError::StorageTooShort {
                path: path.to_path_buf(),
                key,
                declared: nbytes,
                available,
                place: format!("legacy storage data at byte {start} (truncated file?)"),
            });
        }
        records.insert(
            key,
            Record::Mapped {
                start,
                len: nbytes as usize,
            },
        );
        pos = start + nbytes as usize;
    }
    for s in &main.storages {
        if !records.contains_key(&s.key) {
            return Err(CheckpointError::MissingStorage {
                path: path.to_path_buf(),
                key: s.key.clone(),
                record: "legacy storage key list".into(),
            });
        }
    }
    let mut globals = main.globals;
    for part in [&magic, &proto, &sys, &keys_u] {
        globals.extend(part.globals.iter().cloned());
    }
    Ok(Parsed {
        root: main.value,
        st_meta: None,
        records,
        opaque_globals: main.opaque_globals,
        globals,
    })
}

// ---------------------------------------------------------------------------------------------
// safetensors

fn st_dtype(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match d {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::I16 => DType::I16,
        S::I8 => DType::I8,
        S::U8 => DType::U8,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}

fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<Parsed, CheckpointError> {
    let sterr = |detail: String| CheckpointError::Safetensors {
        path: path.to_path_buf(),
        detail,
    };
    let (n, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| sterr(format!("{e:?}")))?;
    let base = n + 8;
    let mut infos: Vec<(String, safetensors::tensor::TensorInfo)> = meta
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    // Stored order: by data offset (the header is a JSON object whose key order the crate drops).
    infos.sort_by(|a, b| {
        a.1.data_offsets
            .cmp(&b.1.data_offsets)
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut items = Vec::with_capacity(infos.len());
    let mut records = HashMap::new();
    for (name, info) in infos {
        let dtype = st_dtype(info.dtype).ok_or_else(|| {
            sterr(format!(
                "tensor `{name}` has unsupported dtype {:?}",
                info.dtype
            ))
        })?;
        let (s, e) = info.data_offsets;
        let numel = info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| sterr(format!("tensor `{name}`: shape overflows")))?;
        let t = TensorInfo {
            dtype,
            strides: TensorInfo::contiguous_strides(&info.shape),
            shape: info.shape,
            offset: 0,
            storage: StorageInfo {
                key: name.clone(),
                dtype,
                numel: numel as u64,
                location: "cpu".into(),
                view_offset: 0,
            },
        };
        records.insert(
            name.clone(),
            Record::Mapped {
                start: base + s,
                len: e.saturating_sub(s),
            },
        );
        items.push((Value::Str(name), Value::Tensor(Box::new(t))));
    }
    let st_meta = meta.metadata().as_ref().map(|m| {
        if let Some(j) = m
            .get("meta")
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        {
            return json_to_value(&j);
        }
        let mut kv: Vec<(&String, &String)> = m.iter().collect();
        kv.sort();
        Value::Dict(Box::new(Dict {
            items: kv
                .into_iter()
                .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                .collect(),
            ordered: false,
            attributes: None,
        }))
    });
    let root = Value::Dict(Box::new(Dict {
        items,
        ordered: true,
        attributes: None,
    }));
    Ok(Parsed {
        root,
        st_meta,
        records,
        opaque_globals: BTreeSet::new(),
        globals: BTreeSet::new(),
    })
}

/// JSON to [`Value`] (objects keep their order).
pub fn json_to_value(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::None,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        J::Object(o) => Value::Dict(Box::new(Dict {
            items: o
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), json_to_value(v)))
                .collect(),
            ordered: false,
            attributes: None,
        })),
    }
}
