"""`podman run` flags that run one k8s/base workload as its pod does, read from the manifests themselves.

    python scripts/pod_flags.py WORKLOAD RUN [KEY=VALUE ...]

WORKLOAD is a Deployment folder of k8s/base (detector, embedder, index, gateway) or `rebuild` (the CronJob's
container). Prints one argument a line: the user, read-only root, dropped capabilities, no-new-privileges, the
memory limit, one named volume `RUN-WORKLOAD-<name>` per emptyDir mount, the environment of every ConfigMap
the container reads (its generator's env file) and of its own `env:`, then the image's arguments with
Kubernetes' `$(VAR)` expansion. KEY=VALUE replaces a ConfigMap value, as an overlay would (e.g. the model
store's URI); `valueFrom` references see the replaced value.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

BASE = Path(__file__).resolve().parent.parent / "k8s" / "base"
SHARED = {"imgsearch-store": BASE / "config" / "store.env", "imgsearch-rebuild": BASE / "config" / "rebuild.env"}


def config_map(name: str) -> dict[str, str]:
    """The generated ConfigMap `name`: imgsearch-<service> is <service>/<service>.env, the rest are shared."""
    path = SHARED.get(name) or BASE / name.removeprefix("imgsearch-") / f"{name.removeprefix('imgsearch-')}.env"
    pairs = (ln.split("=", 1) for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def workload(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, its one container) of the Deployment in k8s/base/NAME, or of the rebuild CronJob."""
    if name == "rebuild":
        doc = yaml.safe_load((BASE / "rebuild-cronjob.yaml").read_text())
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        pod = yaml.safe_load((BASE / name / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def memory(limit: str) -> str:
    """Kubernetes quantity (1536Mi, 2Gi) -> podman's (1536m, 2g): both binary units."""
    m = re.fullmatch(r"(\d+)(Mi|Gi)", limit)
    if not m:
        raise SystemExit(f"unsupported memory limit {limit!r}")
    return m.group(1) + m.group(2)[0].lower()


def environment(container: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map(source["configMapRef"]["name"]))
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        env[item["name"]] = {**config_map(ref["name"]), **overrides}[ref["key"]] if ref else str(item.get("value", ""))
    return {k: overrides.get(k, v) for k, v in env.items()}


def security(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    ctx, pod_ctx = container.get("securityContext", {}), pod.get("securityContext", {})
    flags = ["--user", f"{pod_ctx['runAsUser']}:{pod_ctx['runAsGroup']}"]
    if ctx.get("readOnlyRootFilesystem"):
        # podman adds tmpfs on /run, /tmp and /var/tmp to a read-only root; a pod has only its volumes.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    flags += [f"--cap-drop={cap}" for cap in ctx.get("capabilities", {}).get("drop", [])]
    if ctx.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    return flags


def flags(name: str, run: str, overrides: dict[str, str]) -> list[str]:
    pod, container = workload(name)
    out = security(pod, container) + ["--memory", memory(container["resources"]["limits"]["memory"])]
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in empty_dirs:
            raise SystemExit(f"{name}: volume {mount['name']} is not an emptyDir")
        out += ["-v", f"{run}-{name}-{mount['name']}:{mount['mountPath']}"]
    env = environment(container, overrides)
    for key, value in env.items():
        out += ["-e", f"{key}={value}"]
    out.append("--")  # the image's arguments follow
    out += [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in container["args"]]
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    overrides = dict(item.split("=", 1) for item in argv[2:])
    print("\n".join(flags(argv[0], argv[1], overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
