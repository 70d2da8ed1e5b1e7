#![no_main]
//! Fuzz target `mesos_scheduler_call`: [`drover_fuzz_targets::mesos::scheduler_call`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::mesos::scheduler_call(data));
