#!/usr/bin/env bash
# Runs the Argo CD health check (argocd-health.lua) against every case in argocd-health_test.yaml,
# in Argo CD's own Lua sandbox and with stock Lua interpreters, and checks that argocd-cm-patch.yaml
# carries an identical copy under the key of each kind it serves.
#
#   deploy/gitops/test-health.sh               run the cases; exits non-zero on any mismatch
#   deploy/gitops/test-health.sh --sync-patch  first rewrite argocd-cm-patch.yaml from the .lua file
#
# Each case runs three times:
#   - gopher-lua, the Lua that Argo CD embeds, in the sandbox Argo CD gives a health customization
#     from argocd-cm: only the base, table and package libraries and a safe os (no string, no math).
#     This is tools/argocd-health, a Go program run with `go run`; its modules come from the Go
#     module proxy the first time and from the module cache after that (it also works offline then).
#   - stock Lua 5.1 and Lua 5.4, with every library: they catch code that only gopher-lua accepts.
# Missing interpreters (and Go) are installed with apt-get, and PyYAML with pip, so that a fresh
# machine (or CI) needs nothing else. For stock Lua the YAML objects become Lua table literals via
# python3; numbers are handed over as floats, as Argo CD does.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

sync_patch=false
case "${1:-}" in
  "") ;;
  --sync-patch) sync_patch=true ;;
  *) echo "usage: $0 [--sync-patch]" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for lua in lua5.1 lua5.4; do
  command -v "$lua" >/dev/null 2>&1 || missing+=("$lua")
done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get" >&2
  apt_log="$(mktemp)"
  if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    echo "warning: could not install ${missing[*]}; testing with the interpreters present" >&2
  fi
  rm -f "$apt_log"
fi
interpreters=()
for lua in lua5.1 lua5.4; do
  command -v "$lua" >/dev/null 2>&1 && interpreters+=("$lua")
done
if [ "${#interpreters[@]}" -eq 0 ] && command -v lua >/dev/null 2>&1; then
  interpreters+=(lua)
fi
if [ "${#interpreters[@]}" -eq 0 ]; then
  echo "error: no Lua interpreter (lua5.1, lua5.4 or lua) and none could be installed" >&2
  exit 1
fi

# Go for the gopher-lua harness. A distribution's Go older than tools/argocd-health/go.mod asks for
# fetches the newer toolchain through the module proxy by itself (GOTOOLCHAIN=auto).
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing golang-go with apt-get" >&2
  apt_log="$(mktemp)"
  if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq golang-go; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    echo "warning: could not install Go; the gopher-lua cases will fail" >&2
  fi
  rm -f "$apt_log"
fi

if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "installing PyYAML" >&2
  python3 -m pip install --quiet pyyaml >&2 \
    || python3 -m pip install --quiet --break-system-packages pyyaml >&2 \
    || { command -v apt-get >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-yaml >&2; } \
    || true
  if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    echo "error: python3 cannot import yaml (PyYAML) and it could not be installed" >&2
    exit 1
  fi
fi

exec python3 - "$here" "$sync_patch" "${interpreters[@]}" <<'PYTHON'
import os
import re
import shutil
import subprocess
import sys

import yaml

here, sync_patch, interpreters = sys.argv[1], sys.argv[2] == "true", sys.argv[3:]
script_path = os.path.join(here, "argocd-health.lua")
patch_path = os.path.join(here, "argocd-cm-patch.yaml")
tests_path = os.path.join(here, "argocd-health_test.yaml")
harness_dir = os.path.normpath(os.path.join(here, "..", "..", "tools", "argocd-health"))
# One script for both kinds (it tells them apart by obj.kind): Argo CD looks a check up by group and kind
# only, so each kind needs its own key holding the same Lua.
PATCH_KEYS = [
    "resource.customizations.health.streaming.aep-operator.dev_StreamingConnection",
    "resource.customizations.health.streaming.aep-operator.dev_StreamingDataflow",
]
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

PATCH_HEADER = """\
# Argo CD's argocd-cm with the health check for StreamingConnection and StreamingDataflow, as a
# strategic-merge patch (kustomize `patches:` or `kubectl -n argocd patch configmap argocd-cm
# --patch-file ...`); see README.md beside this file. Argo CD looks a check up by group and kind, so
# the same Lua sits under each kind's key; both are copies of argocd-health.lua: edit that file, then
# run `deploy/gitops/test-health.sh --sync-patch` (the test fails while they differ).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
data:
"""


class Loader(yaml.SafeLoader):
    """Keeps timestamps as the strings Argo CD would see, not datetime objects."""


Loader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node),
)


def load(path):
    with open(path, encoding="utf-8") as file:
        return yaml.load(file, Loader=Loader)


def lua_string(text):
    out = ['"']
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append("\\%03d" % byte)  # decimal escape: the same in Lua 5.1 and 5.4
    out.append('"')
    return "".join(out)


def lua_value(value):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "%d.0" % value  # JSON numbers reach Argo CD's Lua as floats
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(
            "[%s] = %s" % (lua_string(str(key)), lua_value(item))
            for key, item in value.items()
            if item is not None
        ) + "}"
    raise TypeError("cannot render %r as Lua" % (value,))


def run_health(interpreter, obj):
    driver = (
        "obj = %s\n"
        "local hs = dofile(%s)\n"
        'io.write(tostring(hs.status), "\\n", tostring(hs.message))\n'
    ) % (lua_value(obj), lua_string(script_path))
    result = subprocess.run(
        [interpreter, "-"], input=driver.encode(), capture_output=True, timeout=30
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode(errors="replace").strip())
    status, _, message = result.stdout.decode().partition("\n")
    return status, message


with open(script_path, encoding="utf-8") as file:
    lua_source = file.read()

if sync_patch:
    indented = "".join(
        ("    " + line) if line.strip() else "\n"
        for line in lua_source.splitlines(keepends=True)
    )
    with open(patch_path, "w", encoding="utf-8") as file:
        file.write(PATCH_HEADER + "".join("  " + key + ": |\n" + indented for key in PATCH_KEYS))
    print("rewrote %s from %s" % (os.path.relpath(patch_path), os.path.relpath(script_path)))

passed = failed = 0


def report(ok, name, detail):
    global passed, failed
    if ok:
        passed += 1
        print("ok    %s: %s" % (name, detail))
    else:
        failed += 1
        print("FAIL  %s: %s" % (name, detail))


# Each copy inside the argocd-cm patch must be the tested script, byte for byte, and the patch holds
# nothing else: a key for a kind the script does not know would be a check nobody tested.
try:
    data = (load(patch_path) or {}).get("data") or {}
except (OSError, yaml.YAMLError) as error:
    report(False, "argocd-cm-patch.yaml", "cannot load: %s" % error)
    data = None
if data is not None:
    sync_hint = "run %s --sync-patch" % os.path.join(here, "test-health.sh")
    for key in PATCH_KEYS:
        name = "argocd-cm-patch.yaml %s" % key
        embedded = data.get(key)
        if embedded is None:
            report(False, name, "missing; %s" % sync_hint)
        elif embedded == lua_source:
            report(True, name, "carries argocd-health.lua unchanged")
        else:
            report(False, name, "its Lua differs from argocd-health.lua; %s" % sync_hint)
    for key in sorted(set(data) - set(PATCH_KEYS)):
        report(False, "argocd-cm-patch.yaml %s" % key, "unexpected key; %s" % sync_hint)

cases = load(tests_path)["tests"]
referenced = set()
for case in cases:
    input_path = case["inputPath"]
    referenced.add(os.path.normpath(input_path))
    expected = (case["healthStatus"]["status"], case["healthStatus"].get("message", ""))
    try:
        obj = load(os.path.join(here, input_path))
    except (OSError, yaml.YAMLError) as error:
        report(False, input_path, "cannot load: %s" % error)
        continue
    for interpreter in interpreters:
        name = "%s %s" % (interpreter, input_path)
        try:
            actual = run_health(interpreter, obj)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            report(False, name, "the script failed: %s" % error)
            continue
        if actual[0] not in ARGO_STATUSES:
            report(False, name, "%r is not an Argo CD health status" % actual[0])
        elif actual == expected:
            report(True, name, "%s (%s)" % actual)
        else:
            report(False, name, "expected %s (%s), got %s (%s)" % (expected + actual))


# The same cases in Argo CD's sandbox (gopher-lua without string and math): tools/argocd-health.
# Its "ok"/"FAIL" lines count here; its own closing "N passed, N failed" line is checked, not shown.
def run_gopher_lua():
    go = shutil.which("go")
    if go is None:
        report(False, "gopher-lua", "go is not installed, so the cases cannot run in Argo CD's sandbox")
        return
    env = dict(os.environ, GOWORK="off")
    try:
        result = subprocess.run(
            [go, "run", ".", "-dir", here], cwd=harness_dir, env=env,
            capture_output=True, timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        report(False, "gopher-lua", "cannot run tools/argocd-health: %s" % error)
        return
    errors = result.stderr.decode(errors="replace")
    counted = {"ok": 0, "FAIL": 0}
    summary = None
    for line in result.stdout.decode(errors="replace").splitlines():
        match = re.fullmatch(r"(\d+) passed, (\d+) failed", line)
        if match:
            summary = (int(match.group(1)), int(match.group(2)))
        elif line.startswith("ok    ") or line.startswith("FAIL  "):
            ok = line.startswith("ok")
            counted["ok" if ok else "FAIL"] += 1
            name, _, detail = line[6:].partition(": ")
            report(ok, name, detail)
        elif line:
            print(line)
    consistent = summary == (counted["ok"], counted["FAIL"]) and counted["ok"] > 0 \
        and (result.returncode != 0) == (counted["FAIL"] > 0)
    if not consistent:
        report(False, "gopher-lua", "tools/argocd-health exited with %d after %d ok and %d FAIL lines%s" % (
            result.returncode, counted["ok"], counted["FAIL"],
            (": " + " ".join(errors.split())) if errors.strip() else ""))
    elif errors.strip() and result.returncode == 0:
        sys.stderr.write(errors)  # e.g. "go: downloading ..." on the first run


run_gopher_lua()

# Every fixture is a case: an object nobody asserts on is a test that was forgotten.
testdata = os.path.join(here, "testdata")
for entry in sorted(os.listdir(testdata)):
    relative = os.path.normpath(os.path.join("testdata", entry))
    if entry.endswith((".yaml", ".yml")) and relative not in referenced:
        report(False, relative, "not referenced by any case in argocd-health_test.yaml")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PYTHON
