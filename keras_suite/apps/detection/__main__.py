"""`python -m keras_suite.apps.detection VERB ...` is `ksuite VERB detection ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("detection", sys.argv[1:]))
