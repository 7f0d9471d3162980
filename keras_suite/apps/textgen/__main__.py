"""`python -m keras_suite.apps.textgen VERB ...` is `ksuite VERB textgen ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("textgen", sys.argv[1:]))
