//! Errors of the checkpoint reader and writer. Every variant names the file and, where one
//! exists, the position (pickle byte offset, zip record, tensor path) so that a user can tell a
//! truncated download from a malicious file from a format we do not support yet.

use std::path::PathBuf;

/// What went wrong inside one pickle stream. Carries no path: [`CheckpointError::Pickle`] adds
/// the file, the pickle part (`data.pkl`, `legacy main object`, ...) and the byte offset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("input ends in the middle of an opcode (needed {needed} more bytes)")]
    Truncated { needed: u64 },
    #[error("unknown opcode byte 0x{byte:02x}")]
    UnknownOpcode { byte: u8 },
    #[error("unsupported pickle opcode {name}: {why}")]
    UnsupportedOpcode {
        name: &'static str,
        why: &'static str,
    },
    #[error("opcode {op} needs {needed} values on the stack, found {found}")]
    StackUnderflow {
        op: &'static str,
        needed: usize,
        found: usize,
    },
    #[error("opcode {op} needs a MARK on the stack")]
    MissingMark { op: &'static str },
    #[error("memo entry {0} read before it was written")]
    MissingMemo(u64),
    #[error("limit exceeded: {what} ({value} > {limit}); the file is corrupt or built to exhaust memory")]
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("the pickle asks for the forbidden callable `{module}.{name}`; no checkpoint needs it, so the file is refused (nothing was executed)")]
    ForbiddenCallable { module: String, name: String },
    #[error("unknown storage type `{class}` in a persistent id (known: torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage, LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage, BoolStorage, UntypedStorage)")]
    UnknownStorageType { class: String },
    #[error("unsupported tensor element type `{0}` (supported: float32 float16 bfloat16 float64 int64 int32 int16 int8 uint8 bool)")]
    UnsupportedDType(String),
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the stream ended without a STOP opcode")]
    NoStop,
}

/// Every failure of [`super::Checkpoint::open`], [`super::Checkpoint::tensor_bytes`] and the writers.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a checkpoint we can read ({detail}); expected a torch zip file (torch >= 1.6), a legacy torch.save file or a .safetensors file")]
    UnknownFormat { path: PathBuf, detail: String },
    #[error("{path}: corrupt or truncated zip archive: {detail}")]
    Zip { path: PathBuf, detail: String },
    #[error("{path}: zip archive has no `{record}` record; every torch zip checkpoint has one (file is not a torch.save output or is damaged)")]
    MissingRecord { path: PathBuf, record: String },
    #[error("{path}: the pickle refers to storage `{key}` but the archive has no record `{record}` (truncated or edited archive)")]
    MissingStorage {
        path: PathBuf,
        key: String,
        record: String,
    },
    #[error("{path}: storage `{key}` declares {declared} bytes but only {available} are present ({place})")]
    StorageTooShort {
        path: PathBuf,
        key: String,
        declared: u64,
        available: u64,
        place: String,
    },
    #[error("{path}: pickle `{part}` at byte {offset}: {error}")]
    Pickle {
        path: PathBuf,
        part: String,
        offset: u64,
        #[source]
        error: PickleError,
    },
    #[error("{path}: legacy torch.save stream at byte {offset}: {detail}")]
    Legacy {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{path}: tensor `{tensor}` reads bytes {start}..{end} of storage `{key}`, which has only {available} bytes")]
    TensorOutOfRange {
        path: PathBuf,
        tensor: String,
        key: String,
        start: u64,
        end: u64,
        available: u64,
    },
    #[error("{path}: tensor `{tensor}`: {detail}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        detail: String,
    },
    #[error("{path}: safetensors: {detail}")]
    Safetensors { path: PathBuf, detail: String },
    #[error("{path}: cannot write: {detail}")]
    Write { path: PathBuf, detail: String },
}
