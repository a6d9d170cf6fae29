"""Base class for config sections: unknown keys are rejected, types are strict (``top_k: "3"`` or ``top_k: true``
is an error, not 3 or 1) and every field must carry a description."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A YAML config section. ``extra='forbid'`` turns a typo into an error that names the key's path."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, protected_namespaces=())
