"""`python -m keras_suite.apps.dqn VERB ...` is `ksuite VERB dqn ...` (see keras_suite/cli.py)."""

import sys

from keras_suite.cli import app_script

if __name__ == "__main__":
    sys.exit(app_script("dqn", sys.argv[1:]))
