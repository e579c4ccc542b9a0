"""``python -m aiotest``: the same as the ``aiotest`` command."""

from .main import main

main()
