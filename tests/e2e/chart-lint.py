#!/usr/bin/env python3
"""Static checks of berth's Helm chart for machines without helm (deploy-files.sh).

  chart-lint.py CHART_DIR CARGO_TOML

Checks, printing one line per problem (exit 1 if any):
  * Chart.yaml and values.yaml parse, and values' config (berth.toml) is TOML; appVersion (the image's default tag) is the
    crate's version; the probes are /healthz (liveness) and /readyz (readiness);
  * every template's actions are closed ({{ }}) and its blocks (if, range, with,
    define) balanced by {{ end }};
  * every .Values.X.Y a template reads exists in values.yaml, and every template
    it includes is defined;
  * each manifest, with its actions replaced by a placeholder, is YAML whose
    documents have apiVersion, kind and metadata.name.
"""
import pathlib
import re
import sys
import tomllib

import yaml

ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
OPENERS = re.compile(r"^\s*(if|range|with|define|block)\b")
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
INCLUDE = re.compile(r'\b(?:include|template)\s+"([^"]+)"')
DEFINE = re.compile(r'\{\{-?\s*define\s+"([^"]+)"')


def lookup(values, path):
    node = values
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def check_blocks(name, text, problems):
    if text.count("{{") != text.count("}}"):
        problems.append(f"{name}: unbalanced {{{{ and }}}}")
    depth = 0
    for body in ACTION.findall(text):
        body = body.strip()
        if body.startswith("/*"):
            continue
        if OPENERS.match(body):
            depth += 1
        elif re.match(r"^end\b", body):
            depth -= 1
            if depth < 0:
                problems.append(f"{name}: {{{{ end }}}} without a block")
                return
    if depth != 0:
        problems.append(f"{name}: {depth} block(s) without {{{{ end }}}}")


def skeleton(text):
    """The manifest with lines that are only actions dropped, other actions as X."""
    lines = []
    for line in ACTION.sub(lambda m: "\0", text).splitlines():
        if line.strip().replace("\0", "") == "" and "\0" in line:
            continue
        lines.append(line.replace("\0", "X"))
    return "\n".join(lines)


def main(chart_dir, cargo_toml):
    chart = pathlib.Path(chart_dir)
    problems = []
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text())
    crate = tomllib.loads(pathlib.Path(cargo_toml).read_text())["package"]["version"]
    for key in ("apiVersion", "name", "version", "appVersion"):
        if key not in meta:
            problems.append(f"Chart.yaml: no {key}")
    if meta.get("apiVersion") != "v2":
        problems.append("Chart.yaml: apiVersion must be v2 (Helm 3)")
    if str(meta.get("appVersion")) != crate:
        problems.append(f"Chart.yaml: appVersion {meta.get('appVersion')} != crate version {crate}")
    probes = values.get("probes", {})
    for probe, path in (("liveness", "/healthz"), ("readiness", "/readyz"), ("startup", "/healthz")):
        if probes.get(probe, {}).get("path") != path:
            problems.append(f"values.yaml: probes.{probe}.path is not {path}")
    try:
        tomllib.loads(values.get("config", ""))
    except (tomllib.TOMLDecodeError, TypeError) as e:
        problems.append(f"values.yaml: config is not a TOML document: {e}")
    if values.get("mode") not in ("embedded", "scaleout"):
        problems.append("values.yaml: mode must be embedded or scaleout")

    templates = sorted((chart / "templates").iterdir())
    texts = {t.name: t.read_text() for t in templates}
    defined = {d for text in texts.values() for d in DEFINE.findall(text)}
    manifests = 0
    for name, text in texts.items():
        check_blocks(name, text, problems)
        for ref in sorted(set(VALUES_REF.findall(text))):
            if not lookup(values, ref.strip(".").split(".")):
                problems.append(f"{name}: .Values{ref} is not in values.yaml")
        for inc in sorted(set(INCLUDE.findall(text))):
            if inc not in defined:
                problems.append(f"{name}: includes undefined template {inc!r}")
        if not name.endswith(".yaml"):
            continue
        try:
            docs = [d for d in yaml.safe_load_all(skeleton(text)) if d is not None]
        except yaml.YAMLError as e:
            problems.append(f"{name}: not YAML once its actions are stubbed: {e}")
            continue
        for doc in docs:
            manifests += 1
            if not all(k in doc for k in ("apiVersion", "kind", "metadata")) or "name" not in doc["metadata"]:
                problems.append(f"{name}: a document without apiVersion, kind or metadata.name")
    for p in problems:
        print(p)
    print(f"chart {meta.get('name')} {meta.get('version')}: {len(templates)} templates, "
          f"{manifests} manifests, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
