"""Hide TensorFlow's known-harmless C++ error lines from the `ksuite` command's stderr.

TensorFlow's C++ runtime logs some conditions at ERROR level (lines starting `E0000`) that
change nothing for a user: a oneDNN kernel falling back to Eigen on a CPU without AVX-512,
CUDA plugins registered twice. They alarm people reading a log, so the command line (and
only the command line: `keras_suite.cli.main()` without arguments) drops exactly the lines
listed in HARMLESS below and passes everything else through unchanged, in order.
README.md lists them too. KSUITE_SHOW_ALL_LOGS=1 turns the filter off.

C++ writes to file descriptor 2 directly, so the filter sits there: fd 2 becomes a pipe,
and a thread copies each line to the real stderr unless it matches.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Each pattern is searched in one line of stderr. Keep it to lines known to be harmless.
HARMLESS = (
    # oneDNN has no uint8 kernels without AVX-512; TensorFlow uses its Eigen kernel instead
    re.compile(rb"oneDNN supports DT_\w+ only on platforms with AVX-512"),
    # a CUDA build registering its cuDNN/cuBLAS/cuFFT plugins a second time
    re.compile(rb"Unable to register cu(DNN|BLAS|FFT) factory"),
    re.compile(rb"computation placer already registered"),
    # absl's note that it logs to stderr before it is set up (a header, not an error)
    re.compile(rb"All log messages before absl::InitializeLog\(\) is called are written"),
)


def is_harmless(line: bytes) -> bool:
    """True for a stderr line that HARMLESS lists (only C++ log lines: E0000/W0000/...)."""
    if not re.match(rb"[EWI]\d{4} ", line) and b"absl::InitializeLog" not in line:
        return False
    return any(p.search(line) for p in HARMLESS)


_installed = False


def hide_harmless_tf_lines() -> bool:
    """Route fd 2 through a filter thread; returns False when it cannot (no real fd 2,
    KSUITE_SHOW_ALL_LOGS=1, already installed)."""
    global _installed
    if _installed or os.environ.get("KSUITE_SHOW_ALL_LOGS") == "1":
        return False
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):
        return False
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    _installed = True

    def pump():
        with os.fdopen(read_end, "rb") as source, os.fdopen(os.dup(real), "wb", 0) as sink:
            for line in source:
                if not is_harmless(line):
                    sink.write(line)

    thread = threading.Thread(target=pump, name="ksuite-stderr-filter", daemon=True)
    thread.start()

    def restore():
        # Put the real stderr back; the pipe's last writer goes, so the thread reads the
        # rest and ends (a child process still holding the pipe: give up after 2 s).
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)
        thread.join(timeout=2.0)

    atexit.register(restore)
    return True
