use ponder_kernels::{Activations, Format, Isa, QMatrix};
fn act() -> Activations {
    if std::env::var_os("INT8").is_some() {
        Activations::Int8
    } else {
        Activations::F32
    }
}
fn fmt() -> Format {
    if std::env::var_os("Q4").is_some() {
        Format::Q4
    } else {
        Format::Q8
    }
}
use std::time::Instant;
fn main() {
    if std::env::var_os("HEAD").is_some() {
        let head = QMatrix::quantize(49152, 576, &vec![0.01f32; 49152 * 576], fmt()).unwrap();
        let x = vec![1.0f32; 576];
        let t = Instant::now();
        for _ in 0..50 {
            std::hint::black_box(head.matmul_t_full(Isa::Avx2, &x, 1, act()).unwrap());
        }
        let s = t.elapsed().as_secs_f64() / 50.0;
        println!(
            "head only: {:.2} ms, {:.1} GB/s",
            s * 1e3,
            head.bytes() as f64 / s / 1e9
        );
        return;
    }
    // One SmolLM2 token's linear layers: 30 x (960x576, 576x576, 3072x576, 576x1536) + head 49152x576.
    let shapes = [(960usize, 576usize), (576, 576), (3072, 576), (576, 1536)];
    let mats: Vec<QMatrix> = (0..30)
        .flat_map(|_| shapes.iter())
        .map(|&(r, c)| QMatrix::quantize(r, c, &vec![0.01f32; r * c], fmt()).unwrap())
        .collect();
    let head = QMatrix::quantize(49152, 576, &vec![0.01f32; 49152 * 576], fmt()).unwrap();
    let bytes: usize = mats.iter().map(|m| m.bytes()).sum::<usize>() + head.bytes();
    let ns: Vec<usize> = std::env::var("N").map_or(vec![1, 8, 64], |v| {
        v.split(',').map(|x| x.parse().unwrap()).collect()
    });
    for &n in &ns {
        for isa in [Isa::Avx2] {
            let t = Instant::now();
            let reps = 10;
            for _ in 0..reps {
                for m in &mats {
                    std::hint::black_box(
                        m.matmul_t_full(isa, &vec![1.0; n * m.cols()], n, act())
                            .unwrap(),
                    );
                }
                std::hint::black_box(
                    head.matmul_t_full(isa, &vec![1.0; n * 576], n, act())
                        .unwrap(),
                );
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "n={n} {isa:?}: {:.2} ms per token-step, {:.1} GB/s, {:.0} steps/s x n = {:.0} tok/s",
                s * 1e3,
                bytes as f64 / s / 1e9,
                1.0 / s,
                n as f64 / s
            );
        }
    }
}
