#![no_main]
//! Fuzz target `executor_frame`: [`drover_fuzz_targets::agent::executor_frame`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::agent::executor_frame(data));
