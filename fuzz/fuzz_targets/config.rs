#![no_main]
// See quarry_registry::fuzzing::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| quarry_registry::fuzzing::config(data));
