"""`python -m keras_suite.apps.segmentation VERB ...` is `ksuite VERB segmentation ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("segmentation", sys.argv[1:]))
