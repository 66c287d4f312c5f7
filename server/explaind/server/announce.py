"""The lines a launcher waits for on stdout ("explaind listening on port ...")."""
from __future__ import annotations

import os
import sys


def announce(line: str) -> None:
    """One line to stdout in one write: --workers processes share the pipe, and a
    line written in pieces (text, then newline, as print does unbuffered) can
    interleave with another worker's and hide both from whoever waits for them."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())
