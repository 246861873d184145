"""Continual learning of LoRA branches on a noisy analog base (GainLoRA-style gated branches and
the baselines), with accuracy matrices, AP and FT digitally and per chip instance."""
