"""Baselines without SAM, trained, evaluated, predicted and exported by the same commands (issue 17)."""
