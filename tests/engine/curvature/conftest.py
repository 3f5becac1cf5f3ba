"""Fixtures of the curvature tests (cases live in curvature_cases.py)."""

from __future__ import annotations

import pytest
from curvature_cases import MODEL_CASES, ModelCase, build_model_case


@pytest.fixture(scope="session", params=list(MODEL_CASES), ids=list(MODEL_CASES))
def model_case(request: pytest.FixtureRequest) -> ModelCase:
    """A small float64 MLP on digits at its initialisation, with its dense Hessian."""
    return build_model_case(**MODEL_CASES[request.param])
