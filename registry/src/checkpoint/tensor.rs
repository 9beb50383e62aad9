//! Tensor descriptions (dtype, shape, strides, where the bytes are) and the byte arithmetic on
//! them. A description is checked against its storage once, at open; reading gathers strided
//! views into contiguous little-endian bytes and borrows contiguous ones without copying.

use crate::dtype::DType;
use std::borrow::Cow;

/// One storage (`<root>/data/<key>` in a zip file, a block after the pickles in a legacy file,
/// one tensor's byte range in a safetensors file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo {
    /// The storage key of the persistent id (`"0"`, `"94372839"`), or the tensor name for safetensors.
    pub key: String,
    /// Element type of the storage class (`torch.FloatStorage` → f32; `UntypedStorage` → u8).
    pub dtype: DType,
    /// Declared number of elements of `dtype`.
    pub numel: u64,
    /// `cpu`, `cuda:0`, ... (informational: we always read to host memory).
    pub location: String,
    /// Legacy view metadata: this storage is a view starting `view_offset` elements into storage `key`.
    pub view_offset: u64,
}

/// A tensor as the checkpoint describes it, before reading any of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// In elements, as torch's `tensor.stride()`.
    pub strides: Vec<usize>,
    /// `storage_offset()` in elements of `dtype` (already includes a legacy view offset).
    pub offset: usize,
    pub storage: StorageInfo,
}

impl TensorInfo {
    /// Number of elements (product of `shape`); `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Bytes of the tensor when contiguous.
    pub fn nbytes(&self) -> Option<usize> {
        self.numel()?.checked_mul(self.dtype.size())
    }

    /// Row-major strides of `shape`.
    pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![0usize; shape.len()];
        let mut acc = 1usize;
        for (i, &d) in shape.iter().enumerate().rev() {
            if let Some(x) = s.get_mut(i) {
                *x = acc;
            }
            acc = acc.saturating_mul(d.max(1));
        }
        s
    }

    /// True when the elements are laid out row-major without gaps (dims of size 1 ignored,
    /// as torch's `is_contiguous`).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 1 {
                continue;
            }
            if s != expected {
                return false;
            }
            expected = match expected.checked_mul(d) {
                Some(e) => e,
                None => return false,
            };
        }
        true
    }

    /// Byte range `[start, end)` of the storage that the tensor touches, or `None` on overflow.
    /// An empty tensor touches nothing (`start == end`).
    pub fn byte_extent(&self) -> Option<(u64, u64)> {
        let es = self.dtype.size() as u64;
        let start = (self.offset as u64).checked_mul(es)?;
        if self.numel()? == 0 {
            return Some((start, start));
        }
        if self.shape.len() != self.strides.len() {
            return None;
        }
        let mut last = self.offset as u64;
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            last = last.checked_add((d as u64 - 1).checked_mul(s as u64)?)?;
        }
        let end = last.checked_add(1)?.checked_mul(es)?;
        Some((start, end))
    }
}

/// Why a tensor's bytes cannot be produced from its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExtentError {
    Overflow,
    OutOfRange {
        start: u64,
        end: u64,
        available: u64,
    },
}

/// Contiguous little-endian bytes of `t` from its storage bytes `storage`.
pub(crate) fn gather<'a>(t: &TensorInfo, storage: &'a [u8]) -> Result<Cow<'a, [u8]>, ExtentError> {
    let (start, end) = t.byte_extent().ok_or(ExtentError::Overflow)?;
    let available = storage.len() as u64;
    if end > available {
        return Err(ExtentError::OutOfRange {
            start,
            end,
            available,
        });
    }
    let nbytes = t.nbytes().ok_or(ExtentError::Overflow)?;
    if nbytes == 0 {
        return Ok(Cow::Borrowed(&[]));
    }
    let (s, e) = (start as usize, end as usize);
    if t.is_contiguous() {
        return storage
            .get(s..s + nbytes)
            .map(Cow::Borrowed)
            .ok_or(ExtentError::OutOfRange {
                start,
                end: start + nbytes as u64,
                available,
            });
    }
    let region = storage.get(s..e).ok_or(ExtentError::OutOfRange {
        start,
        end,
        available,
    })?;
    let es = t.dtype.size();
    let mut out = Vec::with_capacity(nbytes);
    let rank = t.shape.len();
    let mut index = vec![0usize; rank];
    // Walk the multi-index in row-major order; `pos` is the element offset from `offset`.
    loop {
        let pos: usize = index.iter().zip(&t.strides).map(|(i, s)| i * s).sum();
        let b = pos * es;
        let elem = region.get(b..b + es).ok_or(ExtentError::Overflow)?;
        out.extend_from_slice(elem);
        // Increment the index like an odometer.
        let mut dim = rank;
        loop {
            if dim == 0 {
                return Ok(Cow::Owned(out));
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < t.shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(shape: &[usize], strides: &[usize], offset: usize) -> TensorInfo {
        TensorInfo {
            dtype: DType::U8,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
            storage: StorageInfo {
                key: "0".into(),
                dtype: DType::U8,
                numel: 16,
                location: "cpu".into(),
                view_offset: 0,
            },
        }
    }

    #[test]
    fn transposed_view_is_gathered_row_major() {
        let storage: Vec<u8> = (0..6).collect();
        // a 2x3 tensor transposed: shape (3, 2), strides (1, 3)
        let t = info(&[3, 2], &[1, 3], 0);
        assert!(!t.is_contiguous());
        assert_eq!(gather(&t, &storage).unwrap().as_ref(), &[0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn contiguous_slice_is_borrowed_and_range_checked() {
        let storage: Vec<u8> = (0..6).collect();
        let t = info(&[2], &[1], 4);
        assert!(matches!(
            gather(&t, &storage).unwrap(),
            Cow::Borrowed(&[4, 5])
        ));
        let t = info(&[3], &[1], 4);
        assert_eq!(
            gather(&t, &storage),
            Err(ExtentError::OutOfRange {
                start: 4,
                end: 7,
                available: 6
            })
        );
        let t = info(&[usize::MAX, 2], &[1, 1], 0);
        assert_eq!(gather(&t, &storage), Err(ExtentError::Overflow));
    }
}
