#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| samvad_proto::fuzzing::frame_stream(data));
