#!/usr/bin/env bash
# Usage: tests/deploy_check.sh PGMUX_BINARY
# Checks deploy/: systemd-analyze verify passes on deploy/pgmux.service
# (ExecStart pointed at the built binary) with no complaint at all; the
# example pgmux.toml and the Kubernetes ConfigMap's pgmux.toml pass
# `pgmux --check`; the Kubernetes example has what the docs promise: a native
# sidecar (an init container with restartPolicy: Always), startup, readiness
# and liveness probes on /healthz and /readyz, a preStop hook, and a grace
# period longer than shutdown_timeout.
set -euo pipefail
binary=$1
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "deploy_check: FAILED: $*" >&2
  exit 1
}

# 1. The systemd unit. verify prints warnings (an unknown key, a bad value)
# but still exits 0, so any output is a failure too.
sed "s#/usr/local/bin/pgmux#$binary#" "$root/deploy/pgmux.service" >"$work/pgmux.service"
grep -q "ExecStart=$binary " "$work/pgmux.service" || fail "ExecStart was not rewritten"
if ! out=$(cd "$work" && systemd-analyze verify ./pgmux.service 2>&1); then
  fail "systemd-analyze verify: $out"
fi
[[ -z "$out" ]] || fail "systemd-analyze verify complained: $out"
echo "deploy_check: systemd-analyze verify deploy/pgmux.service: ok"

# 2. The example configurations load.
export DATABASE_URL="postgresql://app:secret@127.0.0.1:5432/app"
"$binary" --check --config "$root/deploy/pgmux.toml" || fail "deploy/pgmux.toml does not load"

# 3. The Kubernetes example.
/usr/bin/python3 - "$root/deploy/kubernetes/pgmux-sidecar.yaml" "$work/configmap.toml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
deployment = kinds["Deployment"]
spec = deployment["spec"]["template"]["spec"]
sidecar = next(c for c in spec["initContainers"] if c["name"] == "pgmux")
assert sidecar.get("restartPolicy") == "Always", "the pgmux init container is not a native sidecar"
for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"),
                    ("livenessProbe", "/healthz")):
    assert sidecar[probe]["httpGet"]["path"] == path, f"{probe} does not ask {path}"
assert "preStop" in sidecar["lifecycle"], "no preStop hook"
toml = kinds["ConfigMap"]["data"]["pgmux.toml"]
open(sys.argv[2], "w").write(toml)
timeout = 30
for line in toml.splitlines():
    if line.strip().startswith("shutdown_timeout"):
        timeout = int(line.split("=")[1].strip().strip('"').rstrip("s"))
assert spec["terminationGracePeriodSeconds"] > timeout, "the grace period is not longer than shutdown_timeout"
print("deploy_check: the Kubernetes example has a native sidecar, three probes and preStop")
PY
"$binary" --check --config "$work/configmap.toml" || fail "the ConfigMap's pgmux.toml does not load"
echo "deploy_check: ok"
