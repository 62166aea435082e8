"""Module docstrings of the composition roots read as prose: short lines, balanced parentheses.

(The inference app's docstring had a sentence spliced into another, over-long lines and
unbalanced parentheses.)
"""

from __future__ import annotations

import importlib

import pytest

APPS = [
    "services.gateway.app",
    "services.features.app",
    "services.inference.app",
    "services.logger.app",
    "services.controlplane.app",
    "services.monitor.app",
]


@pytest.mark.parametrize("module", APPS)
def test_app_docstring_is_well_formed(module: str) -> None:
    doc = importlib.import_module(module).__doc__
    assert doc, module
    for line in doc.splitlines():
        assert len(line) <= 100, f"{module}: {line!r}"
    for paragraph in doc.split("\n\n"):
        assert paragraph.count("(") == paragraph.count(")"), f"{module}: {paragraph!r}"
        assert ") (" not in paragraph.replace("\n", " "), f"{module}: spliced parentheses in {paragraph!r}"
