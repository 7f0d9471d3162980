"""`python -m keras_suite.apps.translation VERB ...` is `ksuite VERB translation ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("translation", sys.argv[1:]))
