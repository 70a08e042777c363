"""Build of the compiled parts: the real-time core (core_rt) and the simulator's plant (sim).

Every ``*.pyx`` under core_rt/ and sim/ (subpackages too) becomes an extension module, named
by its path (core_rt/board/mailbox.pyx: ``core_rt.board.mailbox``). There is no pure-Python
fallback for the core: without a C compiler the build stops with a message saying what to install.
``CHAIR_ONLY=core_rt.motion,sim.plant`` limits a development build to some modules.
"""

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).parent


def _need_compiler() -> None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None and shutil.which("cc") is None:
        sys.exit(
            "error: building the chair's real-time core needs a C compiler and the Python "
            "headers.\n"
            "       On Debian/Ubuntu: sudo apt-get install build-essential python3-dev\n"
            "       (there is deliberately no pure-Python stand-in for core_rt)."
        )


def _extensions() -> list[Extension]:
    from Cython.Build import cythonize

    only = {m for m in os.environ.get("CHAIR_ONLY", "").split(",") if m}
    exts = []
    for pyx in sorted([*HERE.glob("core_rt/**/*.pyx"), *HERE.glob("sim/**/*.pyx")]):
        rel = pyx.relative_to(HERE)
        name = ".".join(rel.with_suffix("").parts)
        if only and name not in only:
            continue
        exts.append(
            Extension(
                name,
                [str(rel)],
                include_dirs=["core_rt/include"],
                extra_compile_args=[
                    "-O3",
                    "-fno-math-errno",
                    "-ffp-contract=off",
                    "-Wno-unused-function",
                ],
                libraries=["m", "pthread"],
            )
        )
    return cythonize(
        exts,
        include_path=[str(HERE)],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


if {"egg_info", "dist_info", "sdist", "--version", "--name"} & set(sys.argv) and not any(
    a.startswith(("build", "bdist", "develop", "install", "editable")) for a in sys.argv
):
    setup()
else:
    _need_compiler()
    setup(ext_modules=_extensions())
