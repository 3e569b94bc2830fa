"""Algorithm 1: the three-stage trainer, its checkpoints and the run directory."""
