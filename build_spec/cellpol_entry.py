"""Entry point of the frozen CellPol app (see cellpol.spec).

The app's own ``main`` handles ``--selftest`` before anything imports Qt, so
``CellPol --selftest`` runs on a machine with no display.
"""

import sys

from cellpol_app.main import main

if __name__ == "__main__":
    sys.exit(main())
