#![no_main]
//! Fuzz target `registry_apply`: [`drover_fuzz_targets::registry::apply`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::registry::apply(data));
