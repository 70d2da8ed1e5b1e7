#![no_main]
//! Fuzz target `raft_rpc`: [`drover_fuzz_targets::raft::rpc`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::raft::rpc(data));
