"""The index rebuild Jobs: their arguments parse with the real `imgsearch` CLI, and the sharded steps agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ann_index.shards.spec import ShardSpec
from services.cli import build_parser
from tests.k8s.helpers import by_kind, env_of, named, pod_specs, workloads
from tests.k8s.render import WORKLOAD_TARGETS, render


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


@pytest.mark.parametrize("target", WORKLOAD_TARGETS)
def test_job_commands_parse_with_the_real_cli(target: str, tmp_root: Path) -> None:
    """Container args, with $(VAR) expanded from the ConfigMaps, are accepted by `imgsearch`'s parser."""
    parser = build_parser()
    docs = render(target, tmp_root)
    for doc in workloads(docs):
        for pod in pod_specs(doc):
            for c in pod["containers"]:
                if not c["image"].startswith("registry.example.com/imgsearch/") or "command" in c:
                    continue
                args = _expand(c["args"], {**env_of(c, docs), "JOB_COMPLETION_INDEX": "0"})
                try:
                    parser.parse_args(args)
                except SystemExit as exc:
                    raise AssertionError(f"{target}: {doc['metadata']['name']}: imgsearch {' '.join(args)}") from exc


def test_rebuild_cronjobs(tmp_root: Path) -> None:
    docs = render("prod+components", tmp_root)
    cronjobs = {c["metadata"]["name"]: c for c in by_kind(docs, "CronJob")}
    spec = cronjobs["imgsearch-index-rebuild"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and not spec.get("suspend")
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec["startingDeadlineSeconds"] > 0 and spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    # The job publishes where the index service polls.
    c = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c, docs)
    assert env["INDEX_URI"] == named(docs, "ConfigMap", "imgsearch-index")["data"]["IMGSEARCH_INDEX_INDEX_URI"]
    assert env["EMBEDDER_URI"] == named(docs, "ConfigMap", "imgsearch-embedder")["data"]["IMGSEARCH_EMBEDDER_MODEL_URI"]
    # The embedding-cache component: the cache file lives on a claim that exists, mounted where the arg points.
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    cache_arg = [a for a in c["args"] if a.startswith("--embedding-cache=")]
    assert cache_arg == ["--embedding-cache=/var/cache/imgsearch/vectors.sqlite"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/var/cache/imgsearch")
    claim = next(v for v in pod["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"]["claimName"]
    pvc = named(docs, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["metadata"]["namespace"] == "imgsearch"
    base = render("prod", tmp_root)
    base_job = next(d for d in by_kind(base, "CronJob") if d["metadata"]["name"] == "imgsearch-index-rebuild")
    assert not any("--embedding-cache" in a for a in base_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                   ["containers"][0]["args"])  # fmt: skip
    # Sharded: completions, --shard .../N and --merge-shards=N agree.
    embed = cronjobs["imgsearch-index-embed-shards"]["spec"]
    merge = cronjobs["imgsearch-index-merge-shards"]["spec"]
    assert embed["suspend"] is True and merge["suspend"] is True
    job = embed["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    n = job["completions"]
    args = job["template"]["spec"]["containers"][0]["args"]
    assert f"--shard=$(JOB_COMPLETION_INDEX)/{n}" in args
    assert f"--merge-shards={n}" in merge["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]


def test_sharded_steps_parse_to_one_run(tmp_root: Path) -> None:
    """Pod i of the Indexed Job embeds shard i/N; the merge merges N; both name the same run, which they
    derive from the catalog, the output store, the embedder and the crop mode, so those must agree."""
    parser = build_parser()
    docs = render("prod+components", tmp_root)
    jobs = {c["metadata"]["name"]: c["spec"]["jobTemplate"]["spec"] for c in by_kind(docs, "CronJob")}
    embed, merge = jobs["imgsearch-index-embed-shards"], jobs["imgsearch-index-merge-shards"]

    def parsed(job: dict[str, Any], index: int) -> Any:
        c = job["template"]["spec"]["containers"][0]
        return parser.parse_args(_expand(c["args"], {**env_of(c, docs), "JOB_COMPLETION_INDEX": str(index)}))

    n = embed["completions"]
    shards = [parsed(embed, i) for i in range(n)]
    assert [a.shard for a in shards] == [ShardSpec(i, n) for i in range(n)]
    assert all(a.merge_shards is None for a in shards)
    final = parsed(merge, 0)
    assert final.merge_shards == n and final.shard is None
    for key in ("catalog", "out", "embedder", "crop", "s3_endpoint_url"):
        assert {getattr(a, key) for a in shards} == {getattr(final, key)}, key
