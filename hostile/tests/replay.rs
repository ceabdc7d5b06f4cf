//! Every target's seeds and every input the fuzzers found (`fuzz/regressions/<target>/`, each
//! a crash, hang or out-of-memory that was fixed) through the harness: none may panic.

use std::path::Path;

#[test]
fn seeds_and_found_inputs_pass_every_target() {
    let found = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut replayed = 0;
    for (name, run) in ponder_hostile::TARGETS {
        let seeds = ponder_hostile::seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for s in &seeds {
            run(s);
        }
        if let Ok(dir) = std::fs::read_dir(found.join(name)) {
            for e in dir {
                let path = e.expect("a readable folder").path();
                let bytes = std::fs::read(&path).expect("a readable input");
                eprintln!("replaying {}", path.display());
                run(&bytes);
                replayed += 1;
            }
        }
    }
    eprintln!("{replayed} found inputs replayed");
}

#[test]
fn seeds_reach_the_readers_they_are_for() {
    // A seed that fails early would leave the reader behind it unfuzzed: the valid seeds parse.
    let gguf = &ponder_hostile::seeds("gguf")[0];
    ponder_formats::gguf::Gguf::parse(Path::new("seed"), gguf.clone())
        .expect("the tiny GGUF parses");
    for s in ponder_hostile::seeds("config_toml") {
        let text = String::from_utf8(s).expect("UTF-8");
        let cfg = ponder_runtime::Config::parse(&text, None).expect("a shipped config parses");
        cfg.validate().expect("a shipped config is valid");
    }
    let req = &ponder_hostile::seeds("remote_answer")[0];
    let v =
        ponder_remote::wire::answer(std::str::from_utf8(&req[1..]).expect("UTF-8")).expect("JSON");
    let (choices, usage) = ponder_remote::wire::choices(&v, 3, false, true).expect("choices");
    assert_eq!((choices.len(), usage.completion, usage.prompt), (2, 4, 9));
    assert!(choices[0].stopped && !choices[0].eos);
}

#[test]
fn deep_nesting_and_huge_numbers_are_refused_not_followed() {
    // Each reader on input nested 100 000 deep, on a test thread's default 2 MiB stack: a
    // recursive reader without a depth limit would overflow it.
    let deep =
        |open: &str, close: &str| format!("{}{}", open.repeat(100_000), close.repeat(100_000));
    let json = deep("[", "]");
    let toml = format!("a = {}", deep("[", "]"));
    let arith = format!("{} = 2", deep("(", ")"));
    let huge = format!("{}1 * 3 = {}3", "9".repeat(5000), "9".repeat(5000));
    for (name, input) in [
        ("config_toml", toml.as_bytes().to_vec()),
        ("model_text", arith.into_bytes()),
        ("model_text", huge.into_bytes()),
        ("remote_answer", [&[0u8][..], json.as_bytes()].concat()),
        ("remote_answer", b"\x00{\"choices\": [{\"text\": \"x\", \"logprobs\": {\"content\": [{\"token\": \"x\", \"logprob\": -1e999}]}}], \"scores\": [1e400]}".to_vec()),
        ("jsonl", [&[0u8][..], json.as_bytes()].concat()),
        ("jsonl", [&[2u8][..], json.as_bytes()].concat()),
        ("serve_request", [&[0u8][..], json.as_bytes()].concat()),
        ("tokenizer_json", json.as_bytes().to_vec()),
        ("safetensors", [&[2u8, 0][..], b"{}", json.as_bytes()].concat()),
    ] {
        let run = ponder_hostile::TARGETS.iter().find(|(n, _)| *n == name).unwrap().1;
        run(&input);
    }
    assert_eq!(ponder_tasks::arith::evaluate(&deep("(", ")")), None);
    assert!(ponder_runtime::Config::parse(&format!("a = {}", deep("[", "]")), None).is_err());
}
