"""A validation error's field path as a person wrote it in the config file.

pydantic names the member of a tagged union it validated by its tag, right
after the union-valued field (``dns_providers.bind9.rfc2136.port``); a person
wrote ``dns_providers.bind9.port``. The path is walked along the model's own
types, so that only a part in that position is left out: a DNS provider
*named* ``route53`` keeps its name, and every tagged union (DNS providers,
provider APIs, compute) is handled alike, whatever its tags.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def field_path(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """``loc`` of an error in ``root`` as dotted parts, tags left out; "(top level)" if empty."""
    parts: list[str] = []
    shape: Any = root
    for part in loc:
        members = _tagged_members(shape)
        if isinstance(part, str) and part in members:
            shape = members[part]
            continue
        parts.append(str(part))
        shape = _inside(shape, part)
    return ".".join(parts) or "(top level)"


def _required(shape: Any) -> Any:
    """``X`` for ``X | None`` (pydantic adds no path part for None), else ``shape``."""
    if get_origin(shape) in (Union, types.UnionType):
        others = [a for a in get_args(shape) if a is not type(None)]
        if len(others) == 1:
            return others[0]
    return shape


def _tagged_members(shape: Any) -> dict[str, Any]:
    """Tag to member, when ``shape`` is a union discriminated by a tag; else nothing."""
    shape = _required(shape)
    if get_origin(shape) is not Annotated:
        return {}
    union, *metadata = get_args(shape)
    key = next((m.discriminator for m in metadata
                if isinstance(getattr(m, "discriminator", None), str)), None)
    if key is None:
        return {}
    members = get_args(union) or (union,)  # a union of one is the member itself
    return {tag: member for member in members
            for tag in get_args(member.model_fields[key].annotation)}


def _inside(shape: Any, part: int | str) -> Any:
    """The type of what sits at ``part`` in a value of type ``shape`` (None when unknown)."""
    shape = _required(shape)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        field = shape.model_fields.get(str(part))
        if field is None:
            return None
        # pydantic keeps the discriminator of a field that is a tagged union itself aside.
        return Annotated[field.annotation, field] if field.discriminator else field.annotation
    if get_origin(shape) is dict:
        return get_args(shape)[1]
    if get_origin(shape) is list:
        return get_args(shape)[0]
    return None
