"""`python -m hil.emulator`: run emulated devices, or control a running emulator (`ctl`)."""

from __future__ import annotations

import sys

from hil.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
