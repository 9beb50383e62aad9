//! The one integration-test binary (each libtorch-linked binary costs a long link and start-up).
mod cli;
mod family;
mod image_formats;
mod inference;
mod models;
mod preprocess;
mod spec;
mod yolov5;
mod yolov6;
mod yolov8;
