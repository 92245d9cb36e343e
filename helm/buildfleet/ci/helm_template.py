#!/usr/bin/env python3
"""A small `helm template` for CI, on helm-python-sdk (Helm's Go SDK through
ctypes; there is no helm binary on these machines).

usage: helm_template.py RELEASE CHART_DIR [-f VALUES.yaml]... [-n NAMESPACE] [--out FILE]

Values as helm merges them: the chart's defaults, then each -f file in turn
(maps merge key by key; anything else replaces). The render call enforces
values.schema.json. A chart that renders is then linted as `helm lint
--strict` would (warnings count; "info" notes do not). Exit 0 with the
manifests written (NOTES.txt and empty templates left out); 2 when the
values fail the schema; 3 when a template fails (e.g. a `fail` check); 4 on
a lint warning; the error goes to stderr.
"""
import argparse
import sys

import helm_python as helm


def merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("release")
    ap.add_argument("chart")
    ap.add_argument("-f", "--values", action="append", default=[])
    ap.add_argument("-n", "--namespace", default="default")
    ap.add_argument("--out", help="write the manifests here (default: stdout)")
    a = ap.parse_args()

    values = {}
    for path in a.values:
        with open(path) as f:
            merge(values, helm.values_from_yaml(f.read()) or {})
    try:
        with helm.Chart.load(a.chart) as chart:
            rendered = chart.render(values=values, name=a.release,
                                    namespace=a.namespace, is_install=True)
    except helm.HelmValuesError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except (helm.HelmRenderError, helm.HelmChartLoadError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 3

    report = helm.lint(a.chart, values, strict=True, namespace=a.namespace)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    for m in problems:
        print(f"Error: lint: {m}", file=sys.stderr)
    if problems:
        return 4

    docs = []
    for path in sorted(rendered):
        body = rendered[path].strip()
        if body and not path.endswith("NOTES.txt"):
            docs.append(f"---\n# Source: {path}\n{body}\n")
    out = open(a.out, "w") if a.out else sys.stdout
    with out:
        out.write("".join(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
