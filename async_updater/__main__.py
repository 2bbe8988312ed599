"""``python -m async_updater`` is the ``async-updater`` command."""

import sys

from .cli import main

sys.exit(main())
