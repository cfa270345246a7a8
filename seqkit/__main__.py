"""``python -m seqkit`` is the ``seqkit`` command."""
from .cli import main

main()
