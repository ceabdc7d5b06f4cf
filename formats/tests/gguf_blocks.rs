//! Every quantised block type the GGUF reader dequantises, checked element for element against an
//! independent implementation: `fixtures/gguf_blocks.json`, made by `scripts/gguf_fixtures.py`
//! with the `gguf` Python package (its docstring has the version and the command).

use std::path::Path;

use ponder_formats::gguf::{GgmlType, Gguf, dequantize};
use ponder_testkit::gguf_writer::GgufWriter;

/// One type's blocks from the fixture.
struct Case {
    name: String,
    id: u32,
    ty: GgmlType,
    block: (u64, u64),
    raw: Vec<u8>,
    want: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/gguf_blocks.json");
    let sets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    sets.as_array()
        .unwrap()
        .iter()
        .map(|set| {
            let id = u32::try_from(set["id"].as_u64().unwrap()).unwrap();
            let hex = set["hex"].as_str().unwrap();
            Case {
                name: set["type"].as_str().unwrap().to_string(),
                id,
                ty: GgmlType::from_u32(id),
                block: (
                    set["block_elements"].as_u64().unwrap(),
                    set["block_bytes"].as_u64().unwrap(),
                ),
                raw: (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
                want: set["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// The fixture's type names, ggml's numbers, and the reader's variants: all three must agree.
const TYPES: [(&str, u32, GgmlType); 12] = [
    ("Q4_0", 2, GgmlType::Q4_0),
    ("Q4_1", 3, GgmlType::Q4_1),
    ("Q5_0", 6, GgmlType::Q5_0),
    ("Q5_1", 7, GgmlType::Q5_1),
    ("Q8_0", 8, GgmlType::Q8_0),
    ("Q2_K", 10, GgmlType::Q2K),
    ("Q3_K", 11, GgmlType::Q3K),
    ("Q4_K", 12, GgmlType::Q4K),
    ("Q5_K", 13, GgmlType::Q5K),
    ("Q6_K", 14, GgmlType::Q6K),
    ("Q8_K", 15, GgmlType::Q8K),
    ("IQ4_NL", 20, GgmlType::Iq4Nl),
];

/// Compares element for element. The reference computes in float32 with ggml's operation order,
/// as `dequantize` does, so every value is expected to match exactly, sign of zero included: the
/// fixture's values are float32 values written as shortest round-trip decimals, so they parse
/// back to the same `f32`. A value that is not exactly an `f32` (a fixture edited by hand) gets a
/// relative tolerance of 1e-6 instead.
fn assert_same(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let w32 = w as f32;
        if f64::from(w32) == w {
            assert!(
                g.to_bits() == w32.to_bits(),
                "{what}[{i}]: got {g:e}, want {w32:e} (bits {:#010x} vs {:#010x})",
                g.to_bits(),
                w32.to_bits()
            );
        } else {
            assert!(
                (f64::from(g) - w).abs() <= 1e-6 * w.abs(),
                "{what}[{i}]: got {g:e}, want {w:e}"
            );
        }
    }
}

#[test]
fn every_block_type_matches_the_gguf_package() {
    let cases = cases();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for (name, id, ty) in TYPES {
        assert!(names.contains(&name), "fixture lacks {name}");
        assert_eq!(GgmlType::from_u32(id), ty, "{name}");
    }
    for c in &cases {
        let known = TYPES.iter().find(|(n, _, _)| *n == c.name);
        let &(_, id, ty) = known.unwrap_or_else(|| panic!("unexpected type {}", c.name));
        assert_eq!((c.id, c.ty), (id, ty), "{}: type number", c.name);
        // The block geometry is the gguf package's (GGML_QUANT_SIZES), which is ggml's.
        assert_eq!(c.ty.block(), Some(c.block), "{}: block size", c.name);
        let (per_block, block_bytes) = c.block;
        assert_eq!(c.raw.len() as u64 % block_bytes, 0, "{}", c.name);
        assert_eq!(
            c.want.len() as u64,
            c.raw.len() as u64 / block_bytes * per_block,
            "{}",
            c.name
        );
        assert!(
            c.raw.len() as u64 >= 2 * block_bytes,
            "{}: fewer than two blocks",
            c.name
        );
        let got = dequantize(c.ty, &c.raw, c.want.len());
        assert_same(&c.name, &got, &c.want);
    }
}

/// The same blocks as a tensor of a GGUF file: the reader sizes the data by `block()` and
/// dequantises it whole.
#[test]
fn every_block_type_reads_through_a_file() {
    let cases = cases();
    let mut w = GgufWriter::new();
    for c in &cases {
        // Two rows of one block each (innermost dimension = one block).
        let per_block = c.block.0 as usize;
        let rows = c.want.len() / per_block;
        w = w.tensor_raw(&c.name, &[rows, per_block], c.id, c.raw.clone());
    }
    let g = Gguf::parse(Path::new("blocks.gguf"), w.build()).unwrap();
    for c in &cases {
        let (shape, got) = g.tensor_f32(&c.name).unwrap();
        assert_eq!(shape.iter().product::<usize>(), c.want.len(), "{}", c.name);
        assert_same(&c.name, &got, &c.want);
    }
}

#[test]
fn a_short_tensor_of_a_new_type_is_an_error() {
    for (name, id, ty) in TYPES {
        let (per_block, block_bytes) = ty.block().unwrap();
        // One byte short of one block: the last tensor ends the file, so it runs past the end.
        let raw = vec![0u8; block_bytes as usize - 1];
        let b = GgufWriter::new()
            .tensor_raw("t", &[per_block as usize], id, raw)
            .build();
        let e = Gguf::parse(Path::new("short.gguf"), b)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`t`") && e.contains("runs past the end"),
            "{name}: {e}"
        );
        if per_block > 1 {
            // An element count that is not a whole number of blocks.
            let b = GgufWriter::new()
                .tensor_raw(
                    "t",
                    &[per_block as usize + 1],
                    id,
                    vec![0; 2 * block_bytes as usize],
                )
                .build();
            let e = Gguf::parse(Path::new("odd.gguf"), b)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a multiple"), "{name}: {e}");
        }
    }
}

#[test]
fn an_unsupported_type_is_an_error_naming_tensor_and_type() {
    // 9 = Q8_1 (an intermediate type no preset writes), 16 = IQ2_XXS, 99 = no type at all.
    for id in [9u32, 16, 99] {
        let b = GgufWriter::new()
            .tensor_f32("ok", &[2], &[1.0, 2.0])
            .tensor_raw("blk.0.ffn_up.weight", &[32], id, vec![0; 64])
            .build();
        let g = Gguf::parse(Path::new("odd.gguf"), b).unwrap();
        assert_eq!(
            g.tensor("blk.0.ffn_up.weight").unwrap().ty,
            GgmlType::Other(id)
        );
        let e = g.tensor_f32("blk.0.ffn_up.weight").unwrap_err().to_string();
        assert!(
            e.contains("odd.gguf")
                && e.contains("blk.0.ffn_up.weight")
                && e.contains(&format!("Other({id})"))
                && e.contains("not supported"),
            "{e}"
        );
        assert_eq!(g.tensor_f32("ok").unwrap().1, vec![1.0, 2.0]);
    }
}
