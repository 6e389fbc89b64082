"""Build script for the optional C extension (metadata lives in pyproject.toml).

The extension is optional: when it cannot be built (no compiler), wsline
installs without it and runs its pure-Python twin.
"""

import os

from setuptools import Extension, setup

# WSLINE_NO_EXTENSIONS=1 at build time skips the compiler altogether.
ext_modules = []
if not os.environ.get("WSLINE_NO_EXTENSIONS"):
    ext_modules.append(
        Extension(
            "wsline._speedups",
            ["src/wsline/_speedups.c"],
            optional=True,
            extra_compile_args=["-O3"] if os.name == "posix" else [],
        )
    )

setup(ext_modules=ext_modules)
