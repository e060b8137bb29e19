"""``python -m collector --handover-fd N``: see :mod:`collector.main`."""

import sys

from collector.main import main

sys.exit(main(sys.argv))
