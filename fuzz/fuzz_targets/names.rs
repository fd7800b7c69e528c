#![no_main]
// See quarry_registry::fuzzing::names.
libfuzzer_sys::fuzz_target!(|data: &[u8]| quarry_registry::fuzzing::names(data));
