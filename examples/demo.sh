#!/usr/bin/env bash
# `make demo`: run the bundled example agents once in a throwaway DOTAGENT_HOME and show
# what dotagent recorded. Nothing outside the temporary directory is touched.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dotagent="$repo/.venv/bin/dotagent"
export DOTAGENT_HOME="$(mktemp -d "${TMPDIR:-/tmp}/dotagent-demo.XXXXXX")"
export DOTAGENT_ROOT="$repo/examples/agents"
cd "$DOTAGENT_HOME"   # so ./agents and ./ hold nothing unexpected

# Bold headings only for a person at a terminal (https://no-color.org, TERM=dumb): piped or
# with NO_COLOR set, the demo prints plain text, as dotagent itself does.
if [[ -t 1 && -z "${NO_COLOR:-}" && "${TERM:-}" != dumb ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
else
  bold='' plain=''
fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

say "dotagent doctor (checks every manifest under $DOTAGENT_ROOT)"
"$dotagent" doctor || true

for spec in hello-python:weekday-morning hello-sh:every-15-minutes disk-alert:hourly; do
  agent="${spec%%:*}" schedule="${spec#*:}"
  say "dotagent run $agent --schedule $schedule"
  set +e
  "$dotagent" run "$agent" --schedule "$schedule"
  code=$?
  set -e
  echo "-> exit code $code"
done

say "dotagent run hello-python --dry-run (AGENT_DRY_RUN=true, heartbeat untouched)"
"$dotagent" run hello-python --dry-run

say "heartbeats written under $DOTAGENT_HOME/state"
for f in "$DOTAGENT_HOME"/state/agents/*/*.heartbeat.json; do
  echo "--- ${f#"$DOTAGENT_HOME"/}"
  cat "$f"; echo
done

say "per-agent log: logs/agents/hello-python/hello-python.log"
cat "$DOTAGENT_HOME/logs/agents/hello-python/hello-python.log"

say "the audit log: every run, with the sha256 of the manifest it ran"
"$dotagent" audit show
"$dotagent" audit verify

say "when do they fire? (cron sets are systemd OnCalendar expressions)"
"$dotagent" calendar --iterations 2 'Mon..Fri *-*-* 08:30:00'

say "done; everything above lives in $DOTAGENT_HOME (delete it when you like)"
