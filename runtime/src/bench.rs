//! Speed measurements of a loaded model, for `ponder bench policy` and `scripts/gpu-check.sh`:
//! greedy decoding of many streams in one batch after a shared prompt, prefill timed apart.

use std::time::Instant;

use ponder_policies::llama::Llama;

use crate::error::Result;

/// One decoding run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeRate {
    /// Streams decoded together.
    pub batch: usize,
    /// Tokens generated per stream.
    pub tokens: usize,
    /// Generated tokens per second, all streams together, prefill excluded.
    pub tokens_per_sec: f64,
    /// Seconds the prompt's prefill took (all streams).
    pub prefill_secs: f64,
}

/// Decodes `tokens` greedy tokens in each of `batch` copies of `prompt`, one batched forward
/// per step, reading the logits back to the host each step (as the step policy does).
///
/// # Errors
/// An empty prompt or batch, or a forward that fails (a prompt past the context).
pub fn decode(model: &Llama, prompt: &[u32], tokens: usize, batch: usize) -> Result<DecodeRate> {
    if prompt.is_empty() || batch == 0 {
        return Err(ponder_policies::Error::Model(
            "decode needs a non-empty prompt and batch".into(),
        )
        .into());
    }
    let rows = vec![prompt.to_vec(); batch];
    let mut cache = model.new_cache(batch);
    let start = Instant::now();
    let mut last = model.forward_last(&rows, &mut cache)?;
    let prefill_secs = start.elapsed().as_secs_f64();
    let v = model.config().vocab;
    let start = Instant::now();
    for _ in 0..tokens {
        let logits = last
            .try_into_vec_as::<f32>()
            .map_err(|e| ponder_policies::Error::Model(format!("reading logits back: {e:?}")))?;
        let next: Vec<Vec<u32>> = logits
            .chunks(v)
            .map(|row| {
                let i = row
                    .iter()
                    .enumerate()
                    .max_by(|x, y| x.1.total_cmp(y.1))
                    .map_or(0, |(i, _)| i);
                vec![i as u32]
            })
            .collect();
        last = model.forward_last(&next, &mut cache)?;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(DecodeRate {
        batch,
        tokens,
        tokens_per_sec: (batch * tokens) as f64 / secs,
        prefill_secs,
    })
}
