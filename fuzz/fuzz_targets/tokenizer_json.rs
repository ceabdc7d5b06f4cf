//! libFuzzer target `tokenizer_json`: the body is [`ponder_hostile::tokenizer_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::tokenizer_json(data));
