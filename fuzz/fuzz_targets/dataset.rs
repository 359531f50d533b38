//! Fuzz target: `properties::dataset_bytes` (its doc comment lists the properties).
#![no_main]

#[path = "../../capture/tests/properties/mod.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::dataset_bytes(data));
