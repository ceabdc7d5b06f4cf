//! Step-level DPO on a tiny random model: the loss's gradients match finite differences, and
//! training lowers the loss and raises the chosen-minus-rejected margin on a small pair set.

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use ponder_policies::dpo::{
    DpoConfig, DpoTrainer, LossKind, Precision, TokenPair, pair_loss, sequence_logprob,
};
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::Llama;
use ponder_policies::lora::{Adapter, Adapters, LayerAdapters, Lora, LoraConfig, Target};
use ponder_testkit::tiny_llama::tiny_llama_gguf;

fn device() -> Device {
    Device::flex().autodiff()
}

fn tiny() -> Llama {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(31)).unwrap();
    Llama::from_gguf(&g, &device()).unwrap()
}

fn pair(i: u32) -> TokenPair {
    TokenPair {
        context: vec![1, 40 + i, 41, 42, 43],
        chosen: vec![60 + i, 61, 62],
        rejected: vec![90, 91 + i, 92, 93],
        label_smoothing: 0.1,
    }
}

/// The loss of one pair with `lora`, as a number and as a tensor.
fn loss(m: &Llama, lora: &Lora, scale: f32, p: &TokenPair, refs: (f32, f32)) -> Tensor<1> {
    let a = Some(Adapters { lora, scale });
    let c = sequence_logprob(m, a, &p.context, &p.chosen, false).unwrap();
    let r = sequence_logprob(m, a, &p.context, &p.rejected, false).unwrap();
    pair_loss(
        c,
        r,
        refs.0,
        refs.1,
        p.label_smoothing,
        0.1,
        LossKind::Sigmoid,
    )
}

fn value(t: Tensor<1>) -> f64 {
    f64::from(t.try_into_vec_as::<f32>().unwrap()[0])
}

/// `lora` with one element of layer 0's V adapter (`a` or `b`) moved by `h`.
fn nudge(lora: &Lora, which: char, idx: usize, h: f32) -> Lora {
    let layers = lora
        .layers
        .iter()
        .enumerate()
        .map(|(li, l)| {
            let copy = |ad: &Option<Adapter>, edit: bool| {
                ad.as_ref().map(|ad| {
                    let t = |v: Vec<f32>, s: [usize; 2]| {
                        Param::from_tensor(Tensor::from_data(TensorData::new(v, s), &device()))
                    };
                    let a = ad.a.as_ref().map(|a| {
                        let mut v = a.val().try_into_vec_as::<f32>().unwrap();
                        if edit && which == 'a' {
                            v[idx] += h;
                        }
                        t(v, a.val().dims())
                    });
                    let mut b = ad.b.val().try_into_vec_as::<f32>().unwrap();
                    if edit && which == 'b' {
                        b[idx] += h;
                    }
                    Adapter {
                        a,
                        b: t(b, ad.b.val().dims()),
                    }
                })
            };
            LayerAdapters {
                q: copy(&l.q, false),
                k: copy(&l.k, false),
                v: copy(&l.v, li == 0),
                o: copy(&l.o, false),
                gate: copy(&l.gate, false),
                up: copy(&l.up, false),
                down: copy(&l.down, false),
            }
        })
        .collect();
    Lora { layers }
}

#[test]
fn dpo_gradients_match_finite_differences() {
    let m = tiny();
    let cfg = LoraConfig {
        rank: 2,
        alpha: 2.0,
        targets: vec![Target::V, Target::Down],
        full: false,
    };
    // B nonzero, so gradients reach A too.
    let fresh = Lora::new(m.config(), &cfg, 5, &device());
    let lora = nudge(&nudge(&fresh, 'b', 3, 0.3), 'b', 10, -0.2);
    let p = pair(0);
    let refs = (-20.0, -22.0);
    let l = loss(&m, &lora, cfg.scale(), &p, refs);
    let grads = l.backward();
    let v = lora.layers[0].v.as_ref().unwrap();
    let ga =
        v.a.as_ref()
            .unwrap()
            .val()
            .grad(&grads)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
    let gb =
        v.b.val()
            .grad(&grads)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
    let h = 1e-2;
    let mut checked = 0;
    for (which, g) in [('a', &ga), ('b', &gb)] {
        for idx in [0usize, 3, 7, 10] {
            let up = value(loss(
                &m,
                &nudge(&lora, which, idx, h),
                cfg.scale(),
                &p,
                refs,
            ));
            let down = value(loss(
                &m,
                &nudge(&lora, which, idx, -h),
                cfg.scale(),
                &p,
                refs,
            ));
            let numeric = (up - down) / (2.0 * f64::from(h));
            let analytic = f64::from(g[idx]);
            // (Gradients here are 1e-4..1e-2; central differences in f32 agree to ~1%.)
            let tol = 1e-5 + 0.02 * numeric.abs().max(analytic.abs());
            assert!(
                (numeric - analytic).abs() < tol,
                "{which}[{idx}]: autodiff {analytic} vs finite difference {numeric}"
            );
            checked += usize::from(analytic.abs() > 1e-5);
        }
    }
    assert!(checked >= 4, "most checked gradients are nonzero");
}

#[test]
fn training_lowers_the_loss_and_raises_the_margin() {
    let m = tiny();
    let pairs: Vec<TokenPair> = (0..6).map(pair).collect();
    let cfg = DpoConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: vec![Target::Q, Target::V, Target::O, Target::Down],
            full: false,
        },
        lr: 2e-2,
        epochs: 8,
        accumulate: 2,
        ..DpoConfig::default()
    };
    let mut t = DpoTrainer::new(&m, pairs, cfg).unwrap();
    let mut steps = 0;
    let report = t.train(|_, _, _| steps += 1).unwrap();
    assert_eq!(steps, 24);
    assert_eq!(report.steps, 24);
    // Fresh adapters (B = 0) are the reference: margin 0, loss log 2.
    assert!(report.before.margin.abs() < 1e-4, "{report:?}");
    assert!((report.before.loss - 2f64.ln()).abs() < 1e-3, "{report:?}");
    assert!(report.after.loss < report.before.loss - 0.1, "{report:?}");
    assert!(report.after.margin > 1.0, "{report:?}");
    assert_eq!(report.after.accuracy, 1.0, "{report:?}");
    // The schedule warms up, then decays to about zero.
    assert!(t.lr_at(0, 100) < t.lr_at(9, 100));
    assert!(t.lr_at(99, 100) < 1e-4 * 2e-2 * 100.0);
    assert!(DpoTrainer::new(&m, vec![], DpoConfig::default()).is_err());
}

#[test]
fn full_fine_tuning_gradients_match_and_training_lowers_the_loss() {
    let m = tiny();
    let cfg = LoraConfig {
        targets: vec![Target::V, Target::Down],
        full: true,
        ..LoraConfig::default()
    };
    // The dense update's gradient is the weight's: check it against finite differences at a
    // nonzero point.
    let lora = nudge(&Lora::new(m.config(), &cfg, 5, &device()), 'b', 4, 0.3);
    let p = pair(1);
    let refs = (-20.0, -22.0);
    let grads = loss(&m, &lora, cfg.scale(), &p, refs).backward();
    let g = lora.layers[0]
        .v
        .as_ref()
        .unwrap()
        .b
        .val()
        .grad(&grads)
        .unwrap();
    let g = g.try_into_vec_as::<f32>().unwrap();
    let h = 1e-2;
    let mut checked = 0;
    for idx in [0usize, 4, 9, 17, 33] {
        let up = value(loss(&m, &nudge(&lora, 'b', idx, h), 1.0, &p, refs));
        let down = value(loss(&m, &nudge(&lora, 'b', idx, -h), 1.0, &p, refs));
        let numeric = (up - down) / (2.0 * f64::from(h));
        let analytic = f64::from(g[idx]);
        let tol = 1e-5 + 0.02 * numeric.abs().max(analytic.abs());
        assert!(
            (numeric - analytic).abs() < tol,
            "delta[{idx}]: autodiff {analytic} vs finite difference {numeric}"
        );
        checked += usize::from(analytic.abs() > 1e-5);
    }
    assert!(checked >= 3, "most checked gradients are nonzero");
    let cfg = DpoConfig {
        lora: cfg,
        lr: 1e-2,
        epochs: 6,
        accumulate: 2,
        ..DpoConfig::default()
    };
    let mut t = DpoTrainer::new(&m, (0..6).map(pair).collect(), cfg).unwrap();
    let report = t.train(|_, _, _| {}).unwrap();
    assert!(report.before.margin.abs() < 1e-4, "{report:?}");
    assert!(report.after.loss < report.before.loss - 0.1, "{report:?}");
    assert!(report.after.margin > 1.0, "{report:?}");
}

#[test]
fn mixed_precision_tracks_f32_and_trains() {
    let m = tiny();
    let p = pair(2);
    let full = value(sequence_logprob(&m, None, &p.context, &p.chosen, false).unwrap());
    for (precision, tol) in [(Precision::Bf16, 0.1), (Precision::F16, 0.02)] {
        let half = m.cast(precision.dtype()).unwrap();
        assert_eq!(half.dtype(), precision.dtype());
        let lp = value(sequence_logprob(&half, None, &p.context, &p.chosen, false).unwrap());
        assert!(
            (lp - full).abs() < tol * full.abs().max(1.0),
            "{precision:?}: {lp} vs f32 {full}"
        );
        let cfg = DpoConfig {
            lora: LoraConfig {
                rank: 4,
                alpha: 8.0,
                targets: vec![Target::Q, Target::V, Target::Down],
                full: false,
            },
            lr: 2e-2,
            epochs: 8,
            accumulate: 2,
            precision,
            ..DpoConfig::default()
        };
        let mut t = DpoTrainer::new(&m, (0..6).map(pair).collect(), cfg).unwrap();
        let report = t.train(|_, _, _| {}).unwrap();
        assert!(
            report.after.loss < report.before.loss - 0.1,
            "{precision:?}: {report:?}"
        );
        assert!(report.after.margin > 1.0, "{precision:?}: {report:?}");
        // The trained adapters stay F32 master weights.
        let lora = t.into_lora();
        let v = lora.layers[0].v.as_ref().unwrap();
        assert_eq!(v.b.val().dtype(), burn::tensor::DType::F32);
    }
}
