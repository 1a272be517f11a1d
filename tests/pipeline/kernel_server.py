"""The child of kernel_shim.SanitizedBackend: loads a kernel library built with sanitizers (its runtime preloaded by
the parent's environment) and answers launch requests over stdin / stdout until stdin closes.

    python tests/pipeline/kernel_server.py LIB

Only numpy, ctypes and the plans are imported here, so nearly all the time under ASan is the kernels' own."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernel_shim import Library, receive, send


def main() -> None:
    library = Library(Path(sys.argv[1]))
    while True:
        try:
            kind, *args = receive(sys.stdin.buffer)
        except EOFError:
            return
        send(sys.stdout.buffer, getattr(library, kind)(*args))


if __name__ == "__main__":
    main()
