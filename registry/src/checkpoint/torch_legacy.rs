//! The torch-legacy format (`_use_new_zipfile_serialization=False`): five pickles, then storages.

use std::collections::HashMap;
use std::path::Path;

use super::ziparchive;

use super::error::CheckpointError;
use super::pickle::{unpickle, Limits, PidMode};
use super::tensor::StorageInfo;
use super::value::Value;
use super::{pickle_error, Parsed, Record, Source};

/// `torch/serialization.py: MAGIC_NUMBER = 0x1950a86a20f9469cfc6c`, as LONG1 bytes.
const LEGACY_MAGIC_LE: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// `torch/serialization.py: PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i64 = 1001;

pub(super) fn parse_legacy(
    path: &Path,
    bytes: &[u8],
    source: &Source<'_>,
) -> Result<Parsed, CheckpointError> {
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
