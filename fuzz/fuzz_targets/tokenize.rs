//! libFuzzer target `tokenize`: the body is [`ponder_hostile::tokenize`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::tokenize(data));
