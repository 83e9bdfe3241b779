"""``python -m async_amp``: the same as the ``async-amp`` command."""

import sys

from .cli import main

sys.exit(main())
