"""Name -> implementation registries, and the config section that picks one by name.

The extension points (objectives, batch methods) are registries: a new loss or blending is one new file whose
``@register_...`` decorator files it under a name, and a config selects it with ``name:``. Its parameters sit
beside ``name`` in the same config section (``method: {name: mixup, mixup_alpha: 0.4}``) and are validated by
the pydantic model given at registration, so a misspelt or foreign key fails before any work.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# said with an unknown name: entries of one's own are registered by importing their module
PLUGIN_HINT = "one of your own? load its module first: albar --plugin ./my_ext.py, or import it"


def declared(fn: Any, offered: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entries of ``offered`` (run context: ``config``, ``model``, ``train_items``...) that ``fn`` declares as
    keyword parameters, all of them if it takes ``**kwargs``: an entry is built with the context it asks for."""
    if not offered:
        return {}
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(offered)
    return {k: v for k, v in offered.items() if k in params}


class NoParams(BaseModel):
    """The parameter model of an entry that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Entry:
    """What a registration files under a name: the factory and the model of its parameters."""

    name: str
    factory: Any  # called with the validated parameter model; returns the implementation
    params: type[BaseModel]


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Entries by name; ``kind`` names them in messages ("objective", "batch method")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}

    def add(self, entry: E, replace: bool = False) -> None:
        old = self._entries.get(entry.name)
        if old is not None and not replace and old.factory is not entry.factory:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered (by {_where(old.factory)}); "
                             f"pick another name or pass replace=True")
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a toy entry clean up with it)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())} "
                             f"({PLUGIN_HINT})") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[E]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _where(factory: Any) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


class NamedConfig(BaseModel):
    """A config section ``{name: <registered>, <its parameters>...}``.

    Subclasses set ``registry`` and may declare fields common to every entry (``prob``). The other keys are the
    chosen entry's parameters: validated by its model and stored with its defaults filled in, so a saved config
    is complete. A key that belongs to another entry is refused, unless it holds that entry's default (configs
    written before the registry listed every method's parameters; they changed nothing).
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    registry: ClassVar[Registry]
    section: ClassVar[str]  # the config key of the section, for messages

    name: str

    @model_validator(mode="after")
    def _validate_params(self) -> NamedConfig:
        if self.name not in self.registry:
            raise ValueError(f"{self.section}.name: unknown {self.registry.kind} {self.name!r}; registered: "
                             f"{', '.join(self.registry.names())} ({PLUGIN_HINT})")
        entry = self.registry.get(self.name)
        given = dict(self.__pydantic_extra__ or {})
        own = list(entry.params.model_fields)
        for key in [k for k in given if k not in own]:
            if not self._foreign_default(key, given[key]):
                raise ValueError(self._unused(key, own))
            del given[key]
        try:
            params = entry.params.model_validate(given)
        except ValidationError as err:
            problems = "; ".join(_problem(self.section, e) for e in err.errors())
            raise ValueError(f"{problems} ({self.registry.kind} {self.name!r})") from None
        extra = self.__pydantic_extra__
        assert extra is not None
        extra.clear()
        extra.update({k: getattr(params, k) for k in entry.params.model_fields})
        return self

    def _unused(self, key: str, own: list[str]) -> str:
        kind, takes = self.registry.kind, ", ".join(own) or "no parameters"
        others = [e.name for e in self.registry.entries() if key in e.params.model_fields]
        if not others:
            return f"{self.section}.{key}: not a parameter of {kind} {self.name!r} (it takes {takes})"
        return (f"{self.section}.{key}: {key} is set but unused: it is a parameter of {kind} {', '.join(others)}, "
                f"not of {self.name!r} "
                f"(it takes {takes}); to switch {self.section}.name, replace the section whole (an override "
                f"{self.section}={{name: {self.name}}}, or albar.config.apply_fragment)")

    def _foreign_default(self, key: str, value: Any) -> bool:
        for e in self.registry.entries():
            field = e.params.model_fields.get(key)
            if field is not None and not field.is_required() and _same(field.get_default(call_default_factory=True),
                                                                        value):
                return True
        return False

    @property
    def params(self) -> BaseModel:
        """The chosen entry's parameters as its validated model."""
        return self.registry.get(self.name).params.model_validate(dict(self.__pydantic_extra__ or {}))


def _problem(section: str, error: Any) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    return ".".join([section, *(str(p) for p in error["loc"])]) + f": {msg}"  # loc () -> "method: ..."


def _same(default: Any, value: Any) -> bool:
    if default == value:
        return True
    if isinstance(default, tuple) and isinstance(value, list):  # YAML reads a tuple back as a list
        return list(default) == value
    return False
