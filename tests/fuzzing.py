"""Settings shared by the property tests that feed hostile input through the public API.

CI runs a short pass.  The long run is opt-in:

    VSCONF_FUZZ_EXAMPLES=10000 python -m pytest tests -k fuzz -p no:cacheprovider

(each fuzz test then runs that many examples).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("VSCONF_FUZZ_EXAMPLES", "150"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 150,  # the short CI pass is the same every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    database=None,
)
