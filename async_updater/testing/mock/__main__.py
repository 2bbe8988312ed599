"""``python -m async_updater.testing.mock``: serve the mock on a loopback address."""

import sys

from .cli import main

sys.exit(main())
