"""``python -m geoassist.train RUN.yaml`` — the entry point for ``accelerate launch``."""

import sys

from geoassist.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
