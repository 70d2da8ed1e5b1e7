#![no_main]
//! Fuzz target `framework_api`: [`drover_fuzz_targets::framework_api::message`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::framework_api::message(data));
