#!/bin/sh
# Example agent in plain POSIX sh. dotagent runs it directly (no shell in between); the
# #! line above picks the interpreter.
set -eu
echo "hello from $AGENT_NAME at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [ "$AGENT_DRY_RUN" = "true" ]; then
  echo "dry run: nothing to do"
  exit 0
fi
echo "working in $(pwd); scratch dir $AGENT_TMPDIR"
