"""LightningModules: loss, metrics, steps and decoding at evaluation time."""
