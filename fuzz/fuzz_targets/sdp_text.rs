#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| samvad_media::fuzzing::sdp_text(data));
