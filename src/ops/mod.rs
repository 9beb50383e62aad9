//! The mmcv custom ops that libtorch lacks, written on tch tensor ops: [`roi_align`] (mmcv
//! `RoIAlign`) and [`deform_conv2d`] (mmcv `DeformConv2d` / `ModulatedDeformConv2d`, plus their
//! `*Pack` module forms as model layers).
//!
//! Target semantics are mmcv 2.0.1's CPU kernels (`mmcv/ops/csrc/pytorch/cpu/roi_align.cpp`,
//! `deform_conv.cpp`, `modulated_deform_conv.cpp`), because the references mmdet models produce
//! come from those kernels. `torchvision.ops.roi_align` / `deform_conv2d` compute the same values
//! (checked by `tests/fixtures/generate/make_ops_refs.py` against float32 numpy ports of the mmcv
//! kernels); where they would differ, mmcv wins.
//!
//! Never: loop over pixels in Rust (only over small chunks of RoIs / output rows), panic on bad
//! shapes (every check returns an [`OpError`]).

pub mod deform_conv;
pub mod roi_align;
pub mod roi_align_onnx;

use std::cell::RefCell;
use std::rc::Rc;

use tch::{nn, Device};

use crate::models::param::{Ctx, ExpectedKey, KeyLog};
use crate::models::ModelError;

pub use deform_conv::{
    deform_conv2d, DeformConv2d, DeformConv2dPack, DeformConvSpec, DeformGeometry,
    ModulatedDeformConv2dPack,
};
pub use roi_align::{roi_align, PoolMode, RoiAlignCfg};

/// Bad arguments to a custom op: the op, what is wrong, and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A tensor argument has the wrong rank or size.
    #[error("{op}: `{arg}` has shape {got:?}, expected {expected}")]
    Shape {
        op: &'static str,
        arg: &'static str,
        got: Vec<i64>,
        expected: String,
    },
    /// A scalar argument the upstream op would reject (assert or kernel check).
    #[error("{op}: {message}")]
    Invalid { op: &'static str, message: String },
    /// A libtorch failure (device, dtype, out of memory).
    #[error("{op}: libtorch: {source}")]
    Torch {
        op: &'static str,
        source: tch::TchError,
    },
}

impl OpError {
    pub(crate) fn shape(
        op: &'static str,
        arg: &'static str,
        got: Vec<i64>,
        expected: impl Into<String>,
    ) -> Self {
        OpError::Shape {
            op,
            arg,
            got,
            expected: expected.into(),
        }
    }

    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        OpError::Invalid {
            op,
            message: message.into(),
        }
    }

    /// Wraps a libtorch error with the op's name (for `map_err`).
    pub(crate) fn torch(op: &'static str) -> impl Fn(tch::TchError) -> OpError {
        move |source| OpError::Torch { op, source }
    }
}

impl From<OpError> for ModelError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Torch { source, .. } => ModelError::Torch(source),
            other => ModelError::Input(other.to_string()),
        }
    }
}

/// A layer built outside a detector (tests, benchmarks): the value `build` returns, the
/// `VarStore` holding its zero-initialised parameters (named as the state-dict keys, to be
/// filled by the caller) and the expected keys in module order.
pub fn standalone_layer<T, E>(
    device: Device,
    build: impl FnOnce(&Ctx) -> Result<T, E>,
) -> Result<(T, nn::VarStore, Vec<ExpectedKey>), E> {
    let vs = nn::VarStore::new(device);
    let log = Rc::new(RefCell::new(KeyLog::default()));
    let layer = {
        let ctx = Ctx::new(vs.root(), log.clone());
        tch::no_grad(|| build(&ctx))?
    };
    let keys = std::mem::take(&mut log.borrow_mut().keys);
    Ok((layer, vs, keys))
}
