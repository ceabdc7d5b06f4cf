//! libFuzzer target `serve_request`: the body is [`ponder_hostile::serve_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::serve_request(data));
