"""How a task gets better: the trained heads and their features, calibration runs, teacher labels, fine-tuning,
eval metrics and per-machine numbers."""
