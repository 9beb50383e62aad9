//! The typed config dicts shared by every component (`norm_cfg`, `act_cfg`, `conv_cfg`) and the
//! path helper: they live in the core's spec stage (`mmcompat_registry::spec`), re-exported here
//! for the component files, which never parse config dicts themselves.

pub use mmcompat_registry::spec::layers::{
    check_conv_cfg, py_int, py_round, Act, ActCfg, NormCfg, UpsampleCfg,
};
pub use mmcompat_registry::spec::parse::join;
