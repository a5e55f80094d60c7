"""Options shared by subcommands are spelled alike: `--s3-endpoint-url` everywhere, `--s3-endpoint` hidden."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from services.cli import build_parser

# Each subcommand that reads a store, with the least arguments it parses.
S3_COMMANDS = {
    "models publish": ["--to", "s3://b/models"],
    "models pull": ["s3://b/models/m"],
    "index build": ["--catalog", "c.jsonl", "--out", "s3://b/index"],
    "index show": ["s3://b/index"],
    "index duplicates": ["--index-uri", "s3://b/index"],
    "eval": ["--queries", "q.jsonl"],
    "replay": ["--log", "s3://b/log"],
    "rollout check": [],
    "train": ["--catalog", "c.jsonl", "--out", "model"],
    "items apply": ["--changes", "c.jsonl", "--index-uri", "s3://b/index"],
    "items drain": ["--inbox", "s3://b/inbox", "--index-uri", "s3://b/index"],
}


def _parsers(parser: argparse.ArgumentParser, words: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{words} {name}".strip())


def test_every_subcommand_with_an_s3_endpoint_is_listed_here() -> None:
    found = {words for words, p in _parsers(build_parser()) if any(a.dest == "s3_endpoint_url" for a in p._actions)}
    assert found == set(S3_COMMANDS)


@pytest.mark.parametrize("command", sorted(S3_COMMANDS))
@pytest.mark.parametrize("flag", ["--s3-endpoint-url", "--s3-endpoint"])
def test_both_spellings_set_the_endpoint(command: str, flag: str) -> None:
    argv = [*command.split(), *S3_COMMANDS[command]]
    assert build_parser().parse_args(argv).s3_endpoint_url is None
    assert build_parser().parse_args([*argv, flag, "http://minio:9000"]).s3_endpoint_url == "http://minio:9000"


@pytest.mark.parametrize("command", sorted(S3_COMMANDS))
def test_help_shows_only_the_chosen_spelling(command: str) -> None:
    parser = dict(_parsers(build_parser()))[command]
    text = parser.format_help()
    assert "--s3-endpoint-url URL" in text
    assert text.replace("--s3-endpoint-url", "").count("--s3-endpoint") == 0


def test_the_endpoint_reaches_the_options_built_from_the_flags() -> None:
    from services.cli.index import _options
    from services.cli.items import _opts
    from services.cli.train import recipe_of

    endpoint = ["--s3-endpoint", "http://minio:9000"]
    parse = build_parser().parse_args
    assert _options(parse(["index", "build", *S3_COMMANDS["index build"], *endpoint])).s3_endpoint_url == endpoint[1]
    assert _opts(parse(["items", "drain", *S3_COMMANDS["items drain"], *endpoint])).s3_endpoint_url == endpoint[1]
    assert recipe_of(parse(["train", *S3_COMMANDS["train"], *endpoint])).s3_endpoint_url == endpoint[1]
