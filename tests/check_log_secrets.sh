#!/usr/bin/env bash
# Fails if pgmux's debug log from the integration tests holds any password,
# SCRAM message or stored secret that the tests used.
set -euo pipefail
log=${1:?usage: check_log_secrets.sh LOGFILE}
if [[ ! -s "$log" ]]; then
  echo "check_log_secrets: $log is missing or empty: the integration tests wrote no log" >&2
  exit 1
fi
if ! grep -q ' debug ' "$log"; then
  echo "check_log_secrets: $log has no debug lines: the check would prove nothing" >&2
  exit 1
fi
# The tests' passwords, SCRAM messages (client-first "n,,", client-final
# "c=...,r=...,p=...", server "r=...,s=...,i=" and "v="), stored secrets.
patterns=(
  'scram-secret' 'md5-secret' 'plain-secret'
  'ts-pw' 'tm-pw' 'tp-pw' 'fs-pw' 'fm-pw' 'fp-pw' 'ops-admin-secret' 'ops-stats-secret'
  'SCRAM-SHA-256\$' 'md5[0-9a-f]{32}'
  'c=biws' 'c=eSws' 'c=cD10' ',p=[A-Za-z0-9+/]{20}' 'r=[A-Za-z0-9+/]{24,},s=' '(^|[ ,])v=[A-Za-z0-9+/]{40}'
)
found=0
for pattern in "${patterns[@]}"; do
  if grep -Eq -- "$pattern" "$log"; then
    echo "check_log_secrets: $log matches /$pattern/:" >&2
    grep -En -- "$pattern" "$log" | head -3 >&2
    found=1
  fi
done
lines=$(wc -l <"$log")
if ((found)); then
  echo "check_log_secrets: FAILED: secrets in $lines log lines" >&2
  exit 1
fi
echo "check_log_secrets: $lines debug log lines, no password, SCRAM message or secret"
