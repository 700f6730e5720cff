"""Model components: the frozen SAM, its checkpoints and preprocessing, and the prompt encoder."""
