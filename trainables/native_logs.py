"""TensorFlow's native start-up lines, kept off the terminal unless the user asks for them.

`TF_CPP_MIN_LOG_LEVEL` quiets TensorFlow's own C++ logger, but some libraries it loads log through absl
before absl is initialised, and those lines go straight to file descriptor 2 whatever the environment says
("All log messages before absl::InitializeLog() ...", "Could not find cuda drivers ..."). So the first
`import tensorflow` of a process runs with descriptor 2 pointed at /dev/null; Python errors raised by the
import are re-raised after descriptor 2 is back, so nothing a user needs is lost. `CXRTUNE_VERBOSE=1`
(`cxrtune --verbose`) turns this off. Nothing here imports TensorFlow at module import.
"""
from __future__ import annotations

import contextlib
import os
import sys

VERBOSE_VARIABLE = "CXRTUNE_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0", "false", "False")


@contextlib.contextmanager
def silenced_stderr():
    """Point file descriptor 2 at /dev/null for the block (native libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow now, without its native start-up lines (unless verbose or already imported)."""
    if "tensorflow" in sys.modules or verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with silenced_stderr():
        import tensorflow
    # TensorFlow's Python warnings (e.g. "N out of the last M calls ... triggered tf.function retracing",
    # which counts every new model a reused trial worker builds as a retrace) are not for the terminal.
    tensorflow.get_logger().setLevel("ERROR")
