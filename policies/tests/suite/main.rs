//! The policies' integration tests as one test binary (each binary links Burn, which is most of
//! their build time): the decoder against HF references, batching,
//! the step policy, LoRA and DPO, and the remote policy against the mock server.

mod batching;
mod dpo;
mod hf_folder;
mod lora;
mod quantized;
mod qwen;
mod remote;
mod smollm2;
mod step_policy;
