"""The exceptions raised by luigi_emodel.

Every error the package raises on purpose derives from :class:`EModelError`, so a caller
can catch the whole family with one ``except``. The hierarchy::

    EModelError
    ├── ConfigurationError      bad input: a file, a field or a value the user must fix
    │   ├── MissingFileError    an input file that does not exist (also a FileNotFoundError)
    │   └── UnknownEModelError  an emodel name absent from recipes.json
    ├── StorageError            a stored file that cannot be read or written safely
    ├── MechanismError          a .mod file that cannot be parsed or compiled
    ├── ExtractionError         recordings from which e-features cannot be extracted
    ├── EvaluationError         a model that cannot be built or simulated
    └── OptimisationError       an optimisation that cannot start, resume or be stored

Messages name the file and the field path when there is one, e.g.
``config/params/pyr.json: parameters[3].value: expected [low, high] or a number``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EModelError",
    "EvaluationError",
    "ExtractionError",
    "MechanismError",
    "MissingFileError",
    "OptimisationError",
    "StorageError",
    "UnknownEModelError",
]


class EModelError(Exception):
    """Base class of every error raised on purpose by luigi_emodel."""


class ConfigurationError(EModelError, ValueError):
    """Bad input: a configuration file, field or value the user has to correct."""


class MissingFileError(ConfigurationError, FileNotFoundError):
    """An input file named by the configuration that does not exist."""

    def __str__(self) -> str:  # OSError would format its args as a tuple
        return str(self.args[0]) if self.args else ""


class UnknownEModelError(ConfigurationError, KeyError):
    """An emodel name that recipes.json does not define."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class StorageError(EModelError, OSError):
    """A stored file (final.json, a checkpoint, an export) that cannot be read or written."""


class MechanismError(EModelError):
    """A .mod file that cannot be parsed or compiled."""


class ExtractionError(EModelError):
    """Recordings from which the e-features cannot be extracted."""


class EvaluationError(EModelError):
    """A cell model that cannot be built, or a simulation that cannot run."""


class OptimisationError(EModelError):
    """An optimisation that cannot start, resume, or have its result stored."""
