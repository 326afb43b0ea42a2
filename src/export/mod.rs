//! Taking a model and its adapter out of tunebench: merged weights, Ollama's Modelfile with a TEMPLATE derived
//! from the model's chat template, and the round trip through a real server (`tunebench export`'s logic; the
//! GGUF LoRA writer is lora::gguf).

pub mod axolotl;
pub mod merged;
pub mod ollama;
pub mod template;
pub mod verify;
