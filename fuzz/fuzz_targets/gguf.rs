//! libFuzzer target `gguf`: the body is [`ponder_hostile::gguf`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::gguf(data));
