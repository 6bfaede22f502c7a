"""``python -m geoassist`` runs the command line, as the ``geoassist`` script does."""

import sys

from geoassist.cli import main

sys.exit(main())
