"""Reading NMODL (.mod) files: the mechanism name and the ions and currents it writes."""

from __future__ import annotations

import re
from pathlib import Path

from luigi_emodel.exceptions import MechanismError
from luigi_emodel.schemas.model_configuration import MechanismConfig

__all__ = ["parse_mod_file", "parse_mod_text"]

_COMMENT_BLOCK = re.compile(r"\bCOMMENT\b.*?\bENDCOMMENT\b", re.DOTALL)
_LINE_COMMENT = re.compile(r":.*$", re.MULTILINE)
_VERBATIM = re.compile(r"\bVERBATIM\b.*?\bENDVERBATIM\b", re.DOTALL)
_NEURON_BLOCK = re.compile(r"\bNEURON\s*\{(?P<body>[^}]*)\}", re.DOTALL)
_NAME = re.compile(r"\b(SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_USEION = re.compile(
    r"\bUSEION\s+(?P<ion>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>.*?)(?=\bUSEION\b|\bNONSPECIFIC_CURRENT\b"
    r"|\bRANGE\b|\bGLOBAL\b|\bPOINTER\b|\bSUFFIX\b|\bPOINT_PROCESS\b|\bTHREADSAFE\b"
    r"|\bELECTRODE_CURRENT\b|\bBBCOREPOINTER\b|\bRANDOM\b|$)",
    re.DOTALL,
)
_WRITE = re.compile(r"\bWRITE\s+(?P<names>[A-Za-z0-9_,\s]+?)(?=\bREAD\b|\bVALENCE\b|\bREPRESENTS\b|$)",
                    re.DOTALL)
_NONSPECIFIC = re.compile(r"\bNONSPECIFIC_CURRENT\s+(?P<names>[A-Za-z0-9_,\s]+?)(?=\n|$)")


def _names(text: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", text.strip()) if n]


def parse_mod_text(text: str, source: str) -> MechanismConfig:
    """The mechanism a .mod file defines: its name and the currents and ions it writes.

    Unlike a line-by-line scan, this reads the NEURON block only (comments and VERBATIM
    blocks removed) and handles ``WRITE ina, ik`` lists and several ``USEION`` on one line.

    Raises:
        MechanismError: no NEURON block, or no SUFFIX / POINT_PROCESS / ARTIFICIAL_CELL in it.
    """
    clean = _VERBATIM.sub("", _COMMENT_BLOCK.sub("", text))
    clean = _LINE_COMMENT.sub("", clean)
    block = _NEURON_BLOCK.search(clean)
    if block is None:
        raise MechanismError(f"{source}: no NEURON {{ ... }} block")
    body = block.group("body")
    name = _NAME.search(body)
    if name is None:
        raise MechanismError(
            f"{source}: NEURON block: no SUFFIX, POINT_PROCESS or ARTIFICIAL_CELL name"
        )
    ion_currents: list[str] = []
    concentrations: list[str] = []
    for use in _USEION.finditer(body):
        write = _WRITE.search(use.group("rest"))
        if write is None:
            continue
        for variable in _names(write.group("names")):
            if variable.startswith("i"):
                ion_currents.append(variable)
                concentrations.append(f"{variable[1:]}i")
            elif variable.endswith("i"):
                concentrations.append(variable)
    nonspecific = [n for m in _NONSPECIFIC.finditer(body) for n in _names(m.group("names"))]
    return MechanismConfig(
        name=name.group("name"),
        location=None,
        ion_currents=ion_currents,
        nonspecific_currents=nonspecific,
        ionic_concentrations=sorted(set(concentrations), key=concentrations.index),
    )


def parse_mod_file(path: Path, source: str | None = None) -> MechanismConfig:
    """:func:`parse_mod_text` of the file at ``path``."""
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise MechanismError(f"{source}: cannot read: {error.strerror or error}") from None
    return parse_mod_text(text, source)
