//! Writes every fuzz target's seed corpus: `cargo run -p ponder-hostile --example seeds -- DIR`
//! makes `DIR/<target>/seed-N` (the fuzz workspace reads `fuzz/corpus/<target>/`).

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".to_string());
    for (name, _) in ponder_hostile::TARGETS {
        let d = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&d).expect("the corpus folder is writable");
        for (i, s) in ponder_hostile::seeds(name).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), s).expect("the corpus folder is writable");
        }
        println!("{name}: {} seeds", ponder_hostile::seeds(name).len());
    }
}
