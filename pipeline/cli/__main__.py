"""``python -m pipeline.cli``: the ``landcover`` command."""

from pipeline.cli.main import console_main

console_main()
