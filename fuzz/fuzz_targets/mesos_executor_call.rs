#![no_main]
//! Fuzz target `mesos_executor_call`: [`drover_fuzz_targets::mesos::executor_call`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::mesos::executor_call(data));
