#![no_main]
//! Fuzz target `agent_checkpoint`: [`drover_fuzz_targets::agent::checkpoint`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::agent::checkpoint(data));
