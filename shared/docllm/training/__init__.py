"""Training: configuration and families (light), the loop and checkpoints (torch, imported on use)."""
