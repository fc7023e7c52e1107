#!/usr/bin/env bash
# `make demo`: run the daemon and the bundled example agents in a throwaway DOTAGENT_HOME
# and show what dotagent recorded. Nothing outside the temporary directory is touched.
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

# A demo-only agent that fires every 2 seconds, so the daemon has something to do at once.
mkdir -p "$DOTAGENT_HOME/agents/ticker"
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

say "dotagent daemon (in the background for 7 seconds; it logs to stderr)"
"$dotagent" daemon 2> "$DOTAGENT_HOME/daemon.stderr" &
daemon_pid=$!
sleep 7
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
cat "$DOTAGENT_HOME/daemon.stderr"

say "what the daemon ran: logs/agents/ticker/ticker.log"
grep '^tick at' "$DOTAGENT_HOME/logs/agents/ticker/ticker.log"

say "dotagent run-now disk-alert (one attempt now, with hooks; the schedule's window is untouched)"
"$dotagent" run-now disk-alert

say "dotagent run hello-python --schedule weekday-morning (foreground: exit code = the agent's)"
set +e
"$dotagent" run hello-python --schedule weekday-morning
code=$?
set -e
echo "-> exit code $code"

say "dotagent run hello-python --dry-run (AGENT_DRY_RUN=true, heartbeat untouched)"
"$dotagent" run hello-python --dry-run

say "dotagent tick --dry-run (what a scheduling step would do now)"
"$dotagent" tick --dry-run

say "heartbeats written under $DOTAGENT_HOME/state"
for f in "$DOTAGENT_HOME"/state/agents/*/*.heartbeat.json; do
  echo "--- ${f#"$DOTAGENT_HOME"/}"
  cat "$f"; echo
done

say "per-agent log: logs/agents/hello-python/hello-python.log"
cat "$DOTAGENT_HOME/logs/agents/hello-python/hello-python.log"

say "the audit log: the daemon, every run, with the sha256 of the manifest it ran"
"$dotagent" audit show -n 25
"$dotagent" audit verify

say "when do they fire? (cron sets are systemd OnCalendar expressions)"
"$dotagent" calendar --iterations 2 'Mon..Fri *-*-* 08:30:00'

say "done; everything above lives in $DOTAGENT_HOME (delete it when you like)"
