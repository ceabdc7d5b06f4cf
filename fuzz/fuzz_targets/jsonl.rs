//! libFuzzer target `jsonl`: the body is [`ponder_hostile::jsonl`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::jsonl(data));
