"""Write prometheusrule.yaml (Prometheus Operator) from alerts.rules.yaml, the one source of the rules.

python k8s/monitoring/gen_prometheusrule.py        # tests/k8s/test_monitoring.py fails while they differ
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
HEADER = """# GENERATED from alerts.rules.yaml by gen_prometheusrule.py: edit that file, then rerun the script.
# For the Prometheus Operator (needs its CRDs); plain Prometheus loads alerts.rules.yaml directly.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, like the source file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    rules = yaml.safe_load((HERE / "alerts.rules.yaml").read_text())
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "imgsearch",
            "labels": {"app.kubernetes.io/name": "imgsearch", "app.kubernetes.io/part-of": "imgsearch"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


if __name__ == "__main__":
    (HERE / "prometheusrule.yaml").write_text(render())
