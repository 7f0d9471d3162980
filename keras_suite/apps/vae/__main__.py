"""`python -m keras_suite.apps.vae VERB ...` is `ksuite VERB vae ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("vae", sys.argv[1:]))
