"""Property-based tests: readers and tokenizers give a result or one NanobertError, never a crash.

The properties live in fuzz_properties.py; `python benchmarks/fuzz.py --minutes N` runs them far longer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_properties import PROPERTIES

# A known crash outside these readers: config.load_config decodes the file itself (Path.read_text), so
# non-UTF-8 bytes escape as UnicodeDecodeError. strict: this fails as soon as the loader is fixed.
KNOWN = {"toml configs (any bytes)": pytest.mark.xfail(raises=UnicodeDecodeError, strict=True,
                                                       reason="config.load_config does not read via textio")}
EXAMPLES = {"text readers": 100, "tokenizers": 100}


@pytest.mark.parametrize("name", [pytest.param(n, marks=KNOWN.get(n, ())) for n in PROPERTIES])
def test_property(name):
    strategy, check = PROPERTIES[name]
    run = settings(max_examples=EXAMPLES.get(name, 200), deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))(given(strategy)(check))
    run()
