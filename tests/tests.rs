//! The one integration-test binary (each libtorch-linked binary costs a long link and start-up).
mod batch;
mod cli;
mod family;
mod fuzz_image_replay;
mod image_formats;
mod inference;
mod model_names;
mod models;
mod newcomer_cfg;
mod newcomer_roots;
mod preprocess;
mod spec;
mod threads;
mod yolov5;
mod yolov6;
mod yolov8;
mod yolox;
