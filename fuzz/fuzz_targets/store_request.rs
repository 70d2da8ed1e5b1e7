#![no_main]
//! Fuzz target `store_request`: [`drover_fuzz_targets::store::request`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::store::request(data));
