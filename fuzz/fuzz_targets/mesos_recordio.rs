#![no_main]
//! Fuzz target `mesos_recordio`: [`drover_fuzz_targets::mesos::recordio`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::mesos::recordio(data));
