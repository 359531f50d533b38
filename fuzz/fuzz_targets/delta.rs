//! Fuzz target: `recap_capture::fuzzing::delta_object` (its doc comment lists the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recap_capture::fuzzing::delta_object(data));
