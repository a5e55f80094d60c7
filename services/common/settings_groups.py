"""Settings fields in nested groups whose environment variables, flags and keyword arguments keep flat names.

A service's settings read better in groups (`settings.shadow.embedder_url`), but the names people set must not
change: ConfigMaps, scripts and runbooks say `IMGSEARCH_GATEWAY_SHADOW_EMBEDDER_URL` and `--shadow-embedder-url`.
pydantic-settings reads a nested model only from one JSON variable or from `<GROUP>__<FIELD>` variables
(`env_nested_delimiter`), and ignores the aliases of a nested model's fields (pydantic-settings issue 27). So
every field of a group has a flat name, its validation alias (else its own name): the environment is read by
flat names, and the flat names of every source (keyword arguments, the environment) are folded into their
groups before the sources are merged, so that a keyword argument still overrides the environment field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource


class SettingsGroup(BaseModel):
    """A group of settings fields: each is given by its flat name (its validation alias) or its own name."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, validate_default=True)


def flat_prefix(prefix: str) -> ConfigDict:
    """The config of a group whose fields' flat names are `prefix` + their names (`shadow_` + `timeout_s`)."""
    return ConfigDict(alias_generator=AliasGenerator(validation_alias=lambda name: prefix + name))


@dataclass(frozen=True)
class FlatField:
    """Where a flat name lands: a field of the settings class itself (group None) or of one of its groups."""

    group: str | None
    name: str
    info: FieldInfo


def group_classes(cls: type[BaseModel]) -> dict[str, type[SettingsGroup]]:
    """The fields of `cls` that are groups, with their classes."""
    out: dict[str, type[SettingsGroup]] = {}
    for name, info in cls.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, SettingsGroup):
            out[name] = info.annotation
    return out


def _flat_name(name: str, info: FieldInfo) -> str:
    return info.validation_alias if isinstance(info.validation_alias, str) else name


def flat_fields(cls: type[BaseModel]) -> dict[str, FlatField]:
    """Every field of a settings class by its flat name, the groups' fields unfolded, in declaration order."""
    groups = group_classes(cls)
    out: dict[str, FlatField] = {}
    for name, info in cls.model_fields.items():
        if name in groups:
            members = [(_flat_name(sub, i), FlatField(name, sub, i)) for sub, i in groups[name].model_fields.items()]
        else:
            members = [(name, FlatField(None, name, info))]
        for flat, where in members:
            if flat in out or (flat in groups and where.group is not None):
                raise TypeError(f"{cls.__name__}: the flat name {flat!r} (in {where.group}) is taken")
            out[flat] = where
    return out


def fold(cls: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """Values by flat name -> values of the class's own fields, each group's as one dict; other keys kept."""
    fields = flat_fields(cls)
    out: dict[str, Any] = {}
    folded: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        group = fields[key].group if key in fields else None
        if group is None:
            out[key] = value
        elif group in values:
            raise ValueError(f"{group} is given whole and by its field {key} too")
        else:
            folded.setdefault(group, {})[fields[key].name] = value
    return out | folded


def flat_env(cls: type[BaseModel], env: EnvSettingsSource) -> dict[str, str | None]:
    """The group members set in the environment (`<PREFIX><FLAT NAME>`), by flat name, as text."""
    out: dict[str, str | None] = {}
    for flat, where in flat_fields(cls).items():
        key = env.env_prefix + flat
        key = key if env.case_sensitive else key.lower()  # env_vars are lowercased unless case-sensitive
        if where.group is not None and key in env.env_vars:
            out[flat] = env.env_vars[key]
    return out


class FoldedSource(PydanticBaseSettingsSource):
    """Another source's values with the flat names folded into groups (and, from the environment, read)."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # not called: __call__ asks the inner source

    def __call__(self) -> dict[str, Any]:
        values = dict(self.inner())
        if isinstance(self.inner, EnvSettingsSource):
            # A group is set by its members' variables only, not also by one JSON variable named after it.
            groups = group_classes(self.settings_cls)
            values = {k: v for k, v in values.items() if k not in groups} | flat_env(self.settings_cls, self.inner)
        return fold(self.settings_cls, values)


class GroupedSettings(BaseSettings):
    """Settings whose groups are read by flat names from keyword arguments, the environment and a .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        folded = (FoldedSource(settings_cls, source) for source in (init_settings, env_settings, dotenv_settings))
        return (*folded, file_secret_settings)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        flat_fields(cls)  # a flat name taken twice fails at import, not as a setting silently read into one field
