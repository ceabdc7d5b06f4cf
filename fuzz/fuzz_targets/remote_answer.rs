//! libFuzzer target `remote_answer`: the body is [`ponder_hostile::remote_answer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::remote_answer(data));
