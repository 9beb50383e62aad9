//! The container formats of a checkpoint file and their detection from the first bytes.

use std::path::Path;

use super::error::CheckpointError;
use super::numpy::parse_pickle;
use super::safetensors_header::parse_safetensors;
use super::torch_legacy::parse_legacy;
use super::torch_zip::parse_zip;
use super::{Checkpoint, Parsed, Source};

/// The container format of a checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    TorchZip,
    TorchLegacy,
    Safetensors,
    /// One plain pickle (no torch magic number), e.g. PaddlePaddle's `.pdparams`; NumPy arrays
    /// in it are read as tensors (`numpy.rs`).
    Pickle,
}

impl Format {
    /// `torch-zip`, `torch-legacy`, `safetensors` or `pickle` (the `inspect --json` spelling).
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::TorchZip => "torch-zip",
            Format::TorchLegacy => "torch-legacy",
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Checkpoint {
    pub(super) fn parse(
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
            match parse_legacy(&path, bytes, source) {
                // Not torch's magic number first: a plain pickle (numpy.rs).
                Err(CheckpointError::UnknownFormat { .. }) => {
                    Ok((Format::Pickle, parse_pickle(&path, bytes)?))
                }
                other => Ok((Format::TorchLegacy, other?)),
            }
        } else {
            let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(CheckpointError::UnknownFormat {
                path,
                detail: format!("first bytes {head}"),
            })
        }
    }
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
