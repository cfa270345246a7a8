"""seqkit: recurrent sequence models in PyTorch."""
__version__ = "0.2.0"

from .memory import keep_freed_memory  # noqa: E402  (glibc: freed memory kept for reuse)


def load(checkpoint, device: str = "cpu"):
    """A trained model as one object for its task (``seqkit.inference``): ``.predict(texts)``
    for a classifier, tagger or transducer, ``.generate(...)`` for a language or music model."""
    from .inference import load as load_predictor

    return load_predictor(checkpoint, device)
