#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every tests/integration/test_*.py is in tests/meson.build's list, so that no test file sits in the tree
without running (three did once).

    check-tests-registered.py SOURCE_ROOT
"""

import pathlib
import sys

root = pathlib.Path(sys.argv[1])
build = (root / "tests" / "meson.build").read_text()
missing = [p.name for p in sorted((root / "tests" / "integration").glob("test_*.py"))
           if f"'integration/{p.name}'" not in build]
if missing:
        print("not registered in tests/meson.build: " + ", ".join(missing))
        sys.exit(1)
print("every integration test file is registered")
