"""chair — the massage-chair controller: sessions, programs, MQTT remote control and the CLI.

The top floor of the house (see docs/architecture.md): it stands on ``core_rt`` (the real-time core)
and picks ``sim`` (the simulated chair) only where the user asks for simulated hardware.
"""

import os

# One BLAS thread: the chair's linear algebra is small (the body scan's fits, chair/contour.py and
# chair/surface.py, at most a few hundred unknowns), and OpenBLAS's worker threads spin-wait for
# each other: on a loaded two-core machine the surface fit's one 150 x 150 least-squares solve took
# 0.2-0.4 CPU-s with two threads against 2.5 ms with one (same result, bit for bit), beside a
# real-time core that needs the other CPU (docs/fleet-sim.md, Where the time goes). Set before
# numpy is first imported (it reads this once); a value given in the environment is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
