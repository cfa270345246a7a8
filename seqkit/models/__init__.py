"""Plain nn.Modules for each task: ints and modules in, never a config."""
