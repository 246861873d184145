"""LoRA branches in peft's vocabulary, the training objectives (lora, noise-aware, halora), the
training loop and adapter cache, continual-learning gates, GPM projections, branch save/load."""
