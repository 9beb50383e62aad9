//! The fuzz targets' entry functions (see FUZZING.md).
pub mod entries;
#[cfg(feature = "image")]
pub mod image_entry;
