"""Loss functions: contrastive and self-distillation objectives."""
