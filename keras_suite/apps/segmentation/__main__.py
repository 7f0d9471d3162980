"""`python -m keras_suite.apps.segmentation ARGS` is `ksuite train segmentation ARGS`."""

import sys

from keras_suite.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "segmentation", *sys.argv[1:]]))
