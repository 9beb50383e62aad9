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
mod format;
pub mod inspect;
pub mod module_tree;
mod numpy;
pub mod pickle;
mod safetensors_header;
mod sections;
pub mod tensor;
mod torch_legacy;
mod torch_zip;
pub mod value;
pub mod writer;
mod ziparchive;

pub use error::{CheckpointError, PickleError};
pub use format::Format;
pub use safetensors_header::json_to_value;
pub use sections::{Section, ROOT_SECTION, SECTION_KEYS};
pub use tensor::{StorageInfo, TensorInfo};
pub use value::{Dict, Opaque, Value};
pub use writer::{write_pth, write_safetensors, TensorData};

use memmap2::Mmap;
use sections::find_sections;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

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

fn pickle_error(path: &Path, part: &str, (offset, error): pickle::Located) -> CheckpointError {
    CheckpointError::Pickle {
        path: path.to_path_buf(),
        part: part.to_string(),
        offset,
        error,
    }
}
