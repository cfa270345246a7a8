"""seqkit's Hydra configs: the folder is the package seqkit.configs once installed (pyproject.toml)."""
