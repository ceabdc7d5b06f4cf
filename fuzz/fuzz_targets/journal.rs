//! libFuzzer target `journal`: the body is [`ponder_hostile::journal`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::journal(data));
