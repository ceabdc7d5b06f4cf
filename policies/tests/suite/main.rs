//! The policies' integration tests as one test binary (each binary links Burn, which is most of
//! their build time): readers and block types, the decoder against HF references, batching,
//! the step policy, LoRA and DPO, and the remote policy against the mock server.

mod batching;
mod dpo;
mod gguf_blocks;
mod hf_folder;
mod lora;
mod quantized;
mod qwen;
mod remote;
mod smollm2;
mod step_policy;
