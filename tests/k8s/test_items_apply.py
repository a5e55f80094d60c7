"""The items-apply component (issue 17): a CronJob that drains the catalog changes inbox with the real CLI,
into the store the index service polls, with the embedder the services use."""

from __future__ import annotations

import re
from pathlib import Path

from services.cli import build_parser
from tests.k8s.helpers import by_kind, env_of, named
from tests.k8s.render import render


def test_items_apply_cronjob_drains_into_the_served_store_with_the_served_embedder(tmp_root: Path) -> None:
    docs = render("prod+components", tmp_root)
    job = next(c for c in by_kind(docs, "CronJob") if c["metadata"]["name"] == "imgsearch-items-apply")
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and not spec.get("suspend")
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["imgsearch/store-access"] == "true"
    c = pod["containers"][0]
    env = env_of(c, docs)
    assert env["INDEX_URI"] == named(docs, "ConfigMap", "imgsearch-index")["data"]["IMGSEARCH_INDEX_INDEX_URI"]
    assert env["EMBEDDER_URI"] == named(docs, "ConfigMap", "imgsearch-embedder")["data"]["IMGSEARCH_EMBEDDER_MODEL_URI"]
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in c["args"]]
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.items_command) == ("items", "drain")
    assert parsed.inbox.startswith("s3://") and parsed.index_uri == env["INDEX_URI"]
    assert not any(
        d["metadata"]["name"] == "imgsearch-items-apply" for d in by_kind(render("prod", tmp_root), "CronJob")
    )
