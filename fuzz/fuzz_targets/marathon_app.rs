#![no_main]
//! Fuzz target `marathon_app`: [`drover_fuzz_targets::text::marathon_app`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::text::marathon_app(data));
