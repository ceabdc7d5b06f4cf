//! Property tests of the readers against the test writers: what the GGUF writer writes reads
//! back exactly; cut anywhere or with any byte changed it is an error or a file, never a panic;
//! and pairs written the way `ponder generate` writes them read back as the same tokens.

use std::path::Path;

use ponder_engine::extract::{PairCritics, PairRecord, SCHEMA_VERSION};
use ponder_formats::Error;
use ponder_formats::gguf::{GgmlType, Gguf, Value};
use ponder_formats::pairs::parse_pairs;
use ponder_formats::tokenizer::Tokenizer;
use ponder_testkit::gguf_writer::GgufWriter;
use proptest::prelude::*;

/// Metadata and tensors to write: a `u32`, an `f32`, a string, a string array, an `i32` array,
/// then F32 tensors.
#[derive(Clone, Debug)]
struct Contents {
    n: u32,
    x: f32,
    s: String,
    list: Vec<String>,
    ints: Vec<i32>,
    tensors: Vec<(Vec<usize>, Vec<f32>)>,
}

fn contents() -> impl Strategy<Value = Contents> {
    let tensor = prop::collection::vec(1usize..5, 1..4).prop_flat_map(|shape| {
        let n = shape.iter().product::<usize>();
        (Just(shape), prop::collection::vec(-1e6f32..1e6, n))
    });
    (
        any::<u32>(),
        -1e30f32..1e30,
        ".{0,40}",
        prop::collection::vec(".{0,12}", 0..8),
        prop::collection::vec(any::<i32>(), 0..8),
        prop::collection::vec(tensor, 0..4),
    )
        .prop_map(|(n, x, s, list, ints, tensors)| Contents {
            n,
            x,
            s,
            list,
            ints,
            tensors,
        })
}

fn write(c: &Contents) -> Vec<u8> {
    let refs: Vec<&str> = c.list.iter().map(String::as_str).collect();
    let mut w = GgufWriter::new()
        .u32("a.n", c.n)
        .f32("a.x", c.x)
        .string("a.s", &c.s)
        .strings("a.list", &refs)
        .i32s("a.ints", &c.ints);
    for (i, (shape, data)) in c.tensors.iter().enumerate() {
        w = w.tensor_f32(&format!("t{i}"), shape, data);
    }
    w.build()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn what_the_writer_writes_reads_back(c in contents()) {
        let g = Gguf::parse(Path::new("p.gguf"), write(&c)).unwrap();
        prop_assert_eq!(g.get("a.n"), Some(&Value::U32(c.n)));
        prop_assert_eq!(g.get("a.x"), Some(&Value::F32(c.x)));
        prop_assert_eq!(g.get("a.s").and_then(Value::as_str), Some(c.s.as_str()));
        let list: Vec<&str> = g.get("a.list").and_then(Value::as_array).unwrap()
            .iter().map(|v| v.as_str().unwrap()).collect();
        prop_assert_eq!(list, c.list.iter().map(String::as_str).collect::<Vec<_>>());
        let ints: Vec<Value> = c.ints.iter().map(|&i| Value::I32(i)).collect();
        prop_assert_eq!(g.get("a.ints").and_then(Value::as_array), Some(ints.as_slice()));
        prop_assert_eq!(g.tensors.len(), c.tensors.len());
        for (i, (shape, data)) in c.tensors.iter().enumerate() {
            let name = format!("t{i}");
            prop_assert_eq!(g.tensor(&name).unwrap().ty, GgmlType::F32);
            let (s, v) = g.tensor_f32(&name).unwrap();
            prop_assert_eq!(&s, shape);
            prop_assert_eq!(&v, data);
        }
    }

    #[test]
    fn a_file_cut_short_anywhere_is_an_error_naming_the_byte(c in contents(), at in any::<prop::sample::Index>()) {
        let bytes = write(&c);
        let cut = at.index(bytes.len());
        match Gguf::parse(Path::new("cut.gguf"), bytes[..cut].to_vec()) {
            // Where reading stopped, or where a tensor cut off would have started.
            Err(Error::Gguf { offset, .. }) => prop_assert!(offset <= bytes.len() as u64),
            Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
            // Only the data section's alignment padding after the last tensor can go unnoticed.
            Ok(g) => prop_assert!(g.tensors.is_empty() || cut >= bytes.len() - 32),
        }
    }

    #[test]
    fn any_byte_changed_is_an_error_or_a_file_never_a_panic(
        c in contents(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = write(&c);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(g) = Gguf::parse(Path::new("flip.gguf"), bytes) {
            for t in &g.tensors {
                if let Ok((shape, v)) = g.tensor_f32(&t.name) {
                    prop_assert_eq!(shape.iter().product::<usize>(), v.len());
                }
            }
        }
    }
}

/// A byte-level tokenizer (GPT-2's byte map, no merges) from GGUF metadata.
fn byte_tokenizer() -> Tokenizer {
    let mut tokens: Vec<String> = (0u8..=255)
        .map(|b| ponder_testkit::tiny_llama::byte_char(b).to_string())
        .collect();
    tokens.push("<|im_end|>".into());
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let bytes = GgufWriter::new()
        .string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", "gpt2")
        .strings("tokenizer.ggml.tokens", &refs)
        .strings("tokenizer.ggml.merges", &[])
        .build();
    Tokenizer::from_gguf(&Gguf::parse(Path::new("t.gguf"), bytes).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pairs_written_as_generate_writes_them_read_back_as_their_tokens(
        task in "[a-zA-Z0-9 ?+=\n]{1,30}",
        prefix in "[a-z0-9 =\n]{0,20}",
        chosen in "[^\\x00]{1,20}",
        rejected in "[^\\x00]{1,20}",
        smoothing in 0.0f64..0.5,
        with_tokens in any::<bool>(),
    ) {
        let tok = byte_tokenizer();
        let (c_ids, r_ids) = (tok.encode(&chosen).unwrap(), tok.encode(&rejected).unwrap());
        // The record `ponder generate` writes, serialised as it writes it.
        let line = serde_json::to_string(&PairRecord {
            schema_version: SCHEMA_VERSION,
            problem_id: "p".into(),
            tree_id: 0,
            depth: 1,
            prompt: format!("{task}{prefix}"),
            prefix: prefix.clone(),
            prefix_tokens: None,
            chosen_node: Some(1),
            rejected_node: Some(2),
            chosen: chosen.clone(),
            rejected: rejected.clone(),
            q_chosen: 0.9,
            q_rejected: 0.1,
            n_chosen: 3,
            n_rejected: 1,
            label_smoothing: smoothing,
            final_correct: Some(true),
            critics: PairCritics::default(),
            chosen_tokens: with_tokens.then(|| c_ids.clone()),
            rejected_tokens: with_tokens.then(|| r_ids.clone()),
        })
        .unwrap();
        let text = format!("{line}\n\n{line}\n");
        let pairs = parse_pairs(Path::new("pairs.jsonl"), text.as_bytes(), &tok, false).unwrap();
        prop_assert_eq!(pairs.len(), 2);
        let p = &pairs[0];
        prop_assert_eq!(&p.chosen, &c_ids);
        prop_assert_eq!(&p.rejected, &r_ids);
        let mut context = tok.encode(&task).unwrap();
        if !prefix.is_empty() {
            context.extend(tok.encode(&prefix).unwrap());
        }
        prop_assert_eq!(&p.context, &context);
        prop_assert!((f64::from(p.label_smoothing) - smoothing).abs() < 1e-6);
    }
}

#[test]
fn a_bad_pairs_line_is_named_by_file_and_line() {
    let tok = byte_tokenizer();
    let text = b"{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": 3}\n";
    let e = parse_pairs(Path::new("p.jsonl"), &text[..], &tok, false).unwrap_err();
    assert!(matches!(e, Error::Record { line: 2, .. }), "{e}");
    assert!(
        e.to_string().starts_with("p.jsonl:2: field `prompt`"),
        "{e}"
    );
    let bad_utf8 = b"{\"prompt\": \"\xff\"}\n";
    let e = parse_pairs(Path::new("p.jsonl"), &bad_utf8[..], &tok, false).unwrap_err();
    assert!(matches!(e, Error::Record { line: 1, .. }), "{e}");
}
