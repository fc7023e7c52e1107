"""Example agent: reads the AGENT_* contract and reports on it."""

import json
import os
import sys
from pathlib import Path

greeting = os.environ.get("GREETING", "hello")
name = os.environ["AGENT_NAME"]
argv = json.loads(os.environ["AGENT_ARGV"])
dry_run = os.environ["AGENT_DRY_RUN"] == "true"

scratch = Path(os.environ["AGENT_TMPDIR"]) / "note.txt"
scratch.write_text(f"{greeting} from {name}\n")

print(f"{greeting}, this is {name} (schedule {os.environ['AGENT_SCHEDULE_ID']}, "
      f"slug {os.environ['AGENT_SLUG']})")
print(f"args: {argv}; dry run: {dry_run}")
if not dry_run:
    print(f"heartbeat file: {os.environ['AGENT_HEARTBEAT_FILE']}")
print("scratch file written:", scratch.read_text().strip(), file=sys.stderr)
