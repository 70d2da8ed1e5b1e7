#![no_main]
//! Fuzz target `resource_text`: [`drover_fuzz_targets::text::resources`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::text::resources(data));
