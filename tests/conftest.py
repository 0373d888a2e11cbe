"""The test session is a process the project starts: it runs with the core's process policy
(:func:`spikenerf.snn.process.configure_process`), so its subprocesses (``ns-train``, ``spikenerf-vision``, the
probes) get the OpenMP wait policy the commands run with, as before the policy moved out of the imports."""

from __future__ import annotations

from spikenerf.snn.process import configure_process


def pytest_configure(config) -> None:
    configure_process()
