"""Settings in nested groups keep their flat names: every environment variable and every `imgsearch serve` flag
of before the grouping still sets its field, now inside a group (services/common/settings_groups.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel, SecretStr

from services.cli import build_parser
from services.cli.serve import settings_from_args
from services.common.settings import SETTINGS_CLASSES, CommonSettings, GatewaySettings, IndexSettings
from services.common.settings_groups import FlatField, GroupedSettings, SettingsGroup, flat_fields

# A candidate pair, so that a shadow sample rate above 0 validates whatever single variable a case sets.
SHADOW_PAIR = {"IMGSEARCH_GATEWAY_SHADOW_EMBEDDER_URL": "http://e", "IMGSEARCH_GATEWAY_SHADOW_INDEX_URL": "http://i"}
# Fields per service before the grouping (all flat), and after it: the flat names must stay exactly these,
# plus those added since (issue 33: max_header_bytes and max_headers everywhere, the gateway's max_answer_mib;
# issue 29: the detector's people_model_uri, people_model_sha256, people_evidence_score, people_alone_score,
# people_beside_max_inflight, people_gate_side).
FLAT_COUNTS = {"detector": 32 + 2 + 6, "embedder": 29 + 2, "index": 28 + 2, "gateway": 46 + 3}
MAX_TOP_LEVEL_FIELDS = 25


def _cases() -> list[tuple[str, str]]:
    return [
        (service, flat)
        for service, cls in SETTINGS_CLASSES.items()
        for flat in flat_fields(cls)
        if flat != "admin_token"  # env IMGSEARCH_ADMIN_TOKEN only: tests/hardening and test_units cover it
    ]


def _number(where: FlatField, step: float) -> float:
    """A valid value other than the default: default + step, or default - step past the field's `le`."""
    default = where.info.default if isinstance(where.info.default, int | float) else 0
    bounds = [rule.le for rule in where.info.metadata if isinstance(rule, annotated_types.Le)]
    return default + step if not bounds or default + step <= bounds[0] else default - step


def sample(where: FlatField) -> tuple[str, Any]:
    """(text as set in env or on the command line, the value the field must then hold) for one field."""
    kinds = {a for a in (where.info.annotation, *getattr(where.info.annotation, "__args__", ())) if a is not None}
    if bool in kinds:
        return ("false", False) if where.info.default else ("true", True)
    if int in kinds:
        value = int(_number(where, 1))
        return str(value), value
    if float in kinds:
        number = _number(where, 0.25)
        return str(number), number
    if Path in kinds:
        return "/tmp/elsewhere", Path("/tmp/elsewhere")
    if list[str] in kinds:
        return "file:///a, file:///b", ["file:///a", "file:///b"]
    assert str in kinds, f"no sample for {where.name}: {where.info.annotation}"
    return f"http://{where.name}.example:1", f"http://{where.name}.example:1"


def value_of(settings: BaseModel, where: FlatField) -> Any:
    holder = getattr(settings, where.group) if where.group else settings
    return getattr(holder, where.name)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in [v for v in os.environ if v.startswith("IMGSEARCH_")]:
        monkeypatch.delenv(var)
    for var, value in SHADOW_PAIR.items():
        monkeypatch.setenv(var, value)
    return monkeypatch


@pytest.mark.parametrize(("service", "flat"), _cases())
def test_each_env_name_sets_its_field(service: str, flat: str, clean_env: pytest.MonkeyPatch) -> None:
    cls = SETTINGS_CLASSES[service]
    where = flat_fields(cls)[flat]
    text, expected = sample(where)
    clean_env.setenv(f"{cls.model_config['env_prefix']}{flat.upper()}", text)
    assert value_of(cls(), where) == expected


@pytest.mark.parametrize(("service", "flat"), _cases())
def test_each_flag_sets_its_field(service: str, flat: str, clean_env: pytest.MonkeyPatch) -> None:
    where = flat_fields(SETTINGS_CLASSES[service])[flat]
    text, expected = sample(where)
    flag = "--" + flat.replace("_", "-")
    argv = [flag if expected else "--no-" + flag[2:]] if isinstance(expected, bool) else [flag, text]
    settings = settings_from_args(service, build_parser().parse_args(["serve", service, *argv]))
    assert value_of(settings, where) == expected


def test_the_flat_names_are_the_fields_of_before_the_grouping() -> None:
    for service, cls in SETTINGS_CLASSES.items():
        assert len(flat_fields(cls)) == FLAT_COUNTS[service], service
        assert len(cls.model_fields) <= MAX_TOP_LEVEL_FIELDS, f"{service}: group its settings"


def test_groups_read_well(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IMGSEARCH_GATEWAY_SHADOW_SAMPLE_RATE", "0.5")
    clean_env.setenv("IMGSEARCH_GATEWAY_CACHE_MAX_BYTES", "1000")
    clean_env.setenv("IMGSEARCH_GATEWAY_MAX_UPLOAD_BYTES", "2000")
    gateway = GatewaySettings()
    assert (gateway.shadow.embedder_url, gateway.shadow.sample_rate) == ("http://e", 0.5)
    assert gateway.cache.max_bytes == 1000
    assert gateway.uploads.max_bytes == 2000 and gateway.uploads.decode_limits().max_bytes == 2000


def test_a_flag_overrides_the_environment_field_by_field_within_a_group(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IMGSEARCH_GATEWAY_SHADOW_TIMEOUT_S", "7")
    clean_env.setenv("IMGSEARCH_GATEWAY_SHADOW_QUEUE_SIZE", "5")
    args = build_parser().parse_args(["serve", "gateway", "--shadow-queue-size", "9"])
    shadow = settings_from_args("gateway", args).shadow
    assert (shadow.timeout_s, shadow.queue_size, shadow.embedder_url) == (7.0, 9, "http://e")
    assert GatewaySettings(shadow_queue_size=3).shadow.queue_size == 3


def test_a_group_is_not_read_from_nested_or_json_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IMGSEARCH_GATEWAY_SHADOW", '{"timeout_s": 9}')
    clean_env.setenv("IMGSEARCH_GATEWAY_SHADOW__QUEUE_SIZE", "3")
    shadow = GatewaySettings().shadow
    assert (shadow.timeout_s, shadow.queue_size) == (5.0, 64)


def test_a_group_given_whole_and_by_its_fields_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="given whole"):
        GatewaySettings(cache={"size": 1}, cache_max_bytes=2)


def test_a_flat_name_taken_twice_fails_at_class_definition() -> None:
    class Pool(SettingsGroup):
        size: int = 1

    with pytest.raises(TypeError, match="'size'"):

        class Clash(GroupedSettings):
            size: int = 2
            pool: Pool = Pool()


def test_the_admin_token_is_still_only_its_own_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IMGSEARCH_ADMIN_TOKEN", "t0ken-t0ken-t0ken-t0ken-t0ken")
    clean_env.setenv("IMGSEARCH_INDEX_ADMIN_TOKEN", "other")
    token = IndexSettings().admin_token
    assert isinstance(token, SecretStr) and token.get_secret_value().startswith("t0ken")
    assert issubclass(IndexSettings, CommonSettings)


@pytest.mark.parametrize("service", list(SETTINGS_CLASSES))
def test_serve_help_lists_every_flag(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):  # argparse formats every help text: a bare "%" in one used to break it
        build_parser().parse_args(["serve", service, "--help"])
    text = capsys.readouterr().out
    flags = [flat.replace("_", "-") for flat in flat_fields(SETTINGS_CLASSES[service]) if flat != "admin_token"]
    assert all(f"--{flag}" in text for flag in flags)
