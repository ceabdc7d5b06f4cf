//! libFuzzer target `safetensors`: the body is [`ponder_hostile::safetensors`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::safetensors(data));
