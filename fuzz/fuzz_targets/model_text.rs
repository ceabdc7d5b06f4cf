//! libFuzzer target `model_text`: the body is [`ponder_hostile::model_text`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::model_text(data));
