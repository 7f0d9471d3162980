"""`python -m keras_suite.apps.gan VERB ...` is `ksuite VERB gan ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("gan", sys.argv[1:]))
