#!/usr/bin/env python3
"""Checks the custom resources in rendered manifests against the
openAPIV3Schema of the CRD subsets in a directory (kubernetes-validate has no
schema for them and only warns).

usage: validate_crs.py CRD_DIR MANIFESTS.yaml

Prints one line per custom resource; exit 1 if one does not match its
schema, or if a custom resource (an apiVersion group with a dot, not
*.k8s.io) has no schema in CRD_DIR. Built-in kinds are left to
kubernetes-validate.
"""
import glob
import os
import sys

import jsonschema
import yaml


def builtin(api_version):
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def main():
    crd_dir, manifests = sys.argv[1:3]
    schemas = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            crd = yaml.safe_load(f)
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (f'{spec["group"]}/{version["name"]}', spec["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]

    rc = 0
    with open(manifests) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        if builtin(key[0]):
            continue
        name = f'{key[1]}/{doc.get("metadata", {}).get("name")}'
        if key not in schemas:
            print(f"ERROR {name}: no schema for {key[0]} {key[1]} in {crd_dir}")
            rc = 1
            continue
        errors = sorted(jsonschema.Draft4Validator(schemas[key]).iter_errors(doc),
                        key=lambda e: list(e.path))
        for e in errors:
            print(f"ERROR {name}: {'.'.join(map(str, e.path))}: {e.message}")
            rc = 1
        if not errors:
            print(f"INFO {name} passed against its CRD subset")
    return rc


if __name__ == "__main__":
    sys.exit(main())
