"""Turn CustomResourceDefinitions into the JSON Schema files kubeconform reads offline.

    python deploy/helm/crd-schemas/convert.py CRD.yaml [CRD.yaml ...]

Writes `<group>/<kind>_<version>.json` next to this script, in strict form: every object
with declared properties refuses unknown ones, as the API server's structural pruning
would drop them (a typo in a values file must fail, not vanish). The CRDs used here come
from the Go module proxy: KEDA (github.com/kedacore/keda/v2, config/crd/bases) and the
Prometheus Operator (github.com/prometheus-operator/prometheus-operator,
example/prometheus-operator-crd).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in [k for k in out if k.startswith("x-kubernetes-")]:
        out.pop(key)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def convert(crd: dict[str, Any]) -> list[Path]:
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"].lower()
    written = []
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        # kubeconform checks apiVersion and kind itself; metadata follows Kubernetes' rules.
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        path = HERE / group / f"{kind}_{version['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(paths: list[str]) -> int:
    for name in paths:
        for document in yaml.safe_load_all(Path(name).read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                for path in convert(document):
                    print(path.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
