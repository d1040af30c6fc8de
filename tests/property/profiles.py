"""Hypothesis profiles for the property suite.

`ci` (the default): derandomized, so every run tries the same examples and a failure reproduces exactly; sized
so that the whole property suite takes a couple of minutes on two cores. `thorough`: random, ~50x the examples,
for long runs; select it with ARCHC_THOROUGH=1 (or HYPOTHESIS_PROFILE=thorough).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

THOROUGH_FACTOR = int(os.environ.get("ARCHC_THOROUGH_FACTOR", "50"))

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("ci", derandomize=True, database=None, max_examples=100, **_common)
settings.register_profile("thorough", max_examples=100 * THOROUGH_FACTOR, **_common)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("thorough" if os.environ.get("ARCHC_THOROUGH") else "ci")
settings.load_profile(PROFILE)


def budget(ci: int) -> settings:
    """The number of examples a property runs: `ci` in CI, THOROUGH_FACTOR times more in thorough runs."""
    return settings(max_examples=ci if PROFILE == "ci" else ci * THOROUGH_FACTOR)
