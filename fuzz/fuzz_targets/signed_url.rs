#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| samvad_core::fuzzing::signed_url(data));
