"""Storage of e-model configurations and results: the only code that knows where files live."""

from __future__ import annotations

from luigi_emodel.access_point.base import DataAccessPoint, OptimisationState
from luigi_emodel.access_point.final_store import FinalStore
from luigi_emodel.access_point.local import LocalAccessPoint

__all__ = ["DataAccessPoint", "FinalStore", "LocalAccessPoint", "OptimisationState",
           "get_access_point"]


def get_access_point(access_point: str, emodel: str, **kwargs: object) -> LocalAccessPoint:
    """An access point by kind (``"local"``), as the reference's factory.

    ``etype``, ``ttype``, ``mtype`` and ``brain_region`` may spell spaces as ``__``.
    """
    if access_point != "local":
        from luigi_emodel.exceptions import ConfigurationError

        raise ConfigurationError(f"access point: expected 'local', got {access_point!r}")
    return LocalAccessPoint(emodel, **kwargs)  # type: ignore[arg-type]
