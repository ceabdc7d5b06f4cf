//! libFuzzer target `config_toml`: the body is [`ponder_hostile::config_toml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ponder_hostile::config_toml(data));
