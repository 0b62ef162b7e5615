"""Planning: the recipes (presets, the auto recipe, one recipe function), the machine timed once, when
pretraining is expected to pay, and the pipeline, the one driver that runs a run's stages."""
