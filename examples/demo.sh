#!/usr/bin/env bash
# `make demo`: the daemon and the bundled example agents in a throwaway DOTAGENT_HOME, for a
# few seconds, then what dotagent recorded. Nothing outside the temporary directory is
# touched. About 20 seconds.
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

# Two demo-only agents with seconds-level schedules, so the daemon has something to do at
# once: one ticks every 2 seconds; the other fails its first attempt and is retried 2
# seconds later (retry_backoff_seconds), which then succeeds.
mkdir -p "$DOTAGENT_HOME/agents/ticker" "$DOTAGENT_HOME/agents/flaky"
cat > "$DOTAGENT_HOME/agents/ticker/agent.toml" <<'TOML'
[agent]
name = "ticker"
timeout_seconds = 10

[run]
command = "sh"
args = ["-c", "echo tick at $(date +%T.%N | cut -c1-12)"]

[[schedules]]
id = "every-2s"
type = "expression"
expression = "*:*:0/2"

[security]
allowed_commands = ["sh"]
network = "deny"
TOML
cat > "$DOTAGENT_HOME/agents/flaky/agent.toml" <<'TOML'
[agent]
name = "flaky"
timeout_seconds = 10

[run]
command = "sh"
args = ["-c", """
if [ -e "$DOTAGENT_HOME/flaky.tried" ]; then echo 'the retry got through'; exit 0; fi
: > "$DOTAGENT_HOME/flaky.tried"
echo 'upstream answered 503 (a simulated outage)' >&2
exit 3
"""]

[[schedules]]
id = "hourly"
type = "interval"
interval_minutes = 60
max_retries = 2
retry_backoff_seconds = [2]

[security]
allowed_commands = ["sh"]
TOML

say "dotagent daemon (in the background; it logs to stderr)"
"$dotagent" daemon 2> "$DOTAGENT_HOME/daemon.stderr" &
daemon_pid=$!
# Until the flaky agent's retry has succeeded (at most 20 s), then 2 more seconds of ticks.
for _ in $(seq 1 100); do
  grep -q 'agent_recovered' "$DOTAGENT_HOME/audit.log" 2>/dev/null && break
  sleep 0.2
done
sleep 2

say "dotagent status (while the daemon runs)"
"$dotagent" status

say "dotagent next -n 5 (the coming fires, like systemctl list-timers)"
"$dotagent" next -n 5

say "stopping the daemon (SIGTERM): its log"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
cat "$DOTAGENT_HOME/daemon.stderr"

say "dotagent history -n 12 (newest first, from state/history.sqlite3)"
"$dotagent" history -n 12

say "dotagent history flaky (the failed attempt and its retry)"
"$dotagent" history flaky

say "dotagent run hello-python --schedule weekday-morning (foreground: exit code = the agent's)"
set +e
"$dotagent" run hello-python --schedule weekday-morning
code=$?
set -e
echo "-> exit code $code"

say "the audit log: the daemon, every run, with the sha256 of the manifest it ran"
"$dotagent" audit show -n 20
"$dotagent" audit verify

say "dotagent status (the daemon is stopped; the state is as last recorded)"
"$dotagent" status

say "done; everything above lives in $DOTAGENT_HOME (delete it when you like)"
