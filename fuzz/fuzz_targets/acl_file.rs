#![no_main]
//! Fuzz target `acl_file`: [`drover_fuzz_targets::text::acls`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::text::acls(data));
