//! The torch-zip format (`torch.save` since torch 1.6): `data.pkl` plus one record per storage.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use super::ziparchive;

use super::error::CheckpointError;
use super::pickle::{unpickle, Limits, PidMode, Unpickled};
use super::{pickle_error, Parsed, Record, Source};

/// Largest compressed zip record we decompress into memory (torch never compresses).
const MAX_DECOMPRESSED_RECORD: u64 = 16 << 30;

pub(super) fn parse_zip(
    path: &Path,
    bytes: &[u8],
    source: &Source<'_>,
) -> Result<Parsed, CheckpointError> {
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
