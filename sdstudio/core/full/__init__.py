"""Full fine-tuning (training_method = "full"): every weight trains, not LoRA adapters."""
