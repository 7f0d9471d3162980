"""`python -m keras_suite.apps.classification VERB ...` is `ksuite VERB classification ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("classification", sys.argv[1:]))
