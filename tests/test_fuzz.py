"""Property-based tests: readers and tokenizers give a result or one NanobertError, never a crash.

The properties live in fuzz_properties.py; `python benchmarks/fuzz.py --minutes N` runs them far longer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_properties import PROPERTIES

EXAMPLES = {"text readers": 100, "tokenizers": 100}


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property(name):
    strategy, check = PROPERTIES[name]
    run = settings(max_examples=EXAMPLES.get(name, 200), deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))(given(strategy)(check))
    run()
