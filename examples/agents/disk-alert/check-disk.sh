#!/bin/sh
# Prints the usage of $DISK_PATH and exits 1 when it is at or above $THRESHOLD_PCT percent.
set -eu
path="${DISK_PATH:-/}"
threshold="${THRESHOLD_PCT:-90}"
used=$(df -P "$path" | awk 'NR == 2 { sub("%", "", $5); print $5 }')
if [ -z "$used" ]; then
  echo "could not read disk usage for $path" >&2
  exit 2
fi
if [ "$used" -ge "$threshold" ]; then
  echo "ALERT: $path is ${used}% full (threshold ${threshold}%)" >&2
  exit 1
fi
echo "ok: $path is ${used}% full (threshold ${threshold}%)"
