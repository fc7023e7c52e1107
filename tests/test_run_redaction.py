"""A registered secret never reaches the per-agent log, even split across output chunks."""

from __future__ import annotations

import sys
from pathlib import Path

from dotagent import redaction
from dotagent.discovery import discover
from dotagent.paths import Home
from dotagent.runner.foreground import run_schedule

from helpers import simple_agent


def test_secret_values_are_redacted_in_the_agent_log(tmp_path: Path,
                                                     dotagent_home: Path) -> None:
    secret = "s3cr3t-token-value-1234"
    script = ("import sys, time\n"
              f"sys.stdout.write('token={secret[:6]}'); sys.stdout.flush(); time.sleep(0.2)\n"
              f"print('{secret[6:]} end')\n"
              f"print('again {secret}', file=sys.stderr)\n")
    root = tmp_path / "agents"
    simple_agent(root, "leaky", sys.executable, ["-c", script])
    loaded = discover({"DOTAGENT_ROOT": str(root), "DOTAGENT_HOME": str(dotagent_home)},
                      tmp_path, include_cwd=False).agents["leaky"]
    redaction.register_secret(secret)
    try:
        outcome = run_schedule(loaded, loaded.manifest.schedules[0], home=Home(dotagent_home))
    finally:
        redaction.clear_secrets()
    assert outcome.exit_code == 0
    log = (dotagent_home / "logs/agents/leaky/leaky.log").read_text()
    assert secret not in log
    assert "token=[REDACTED] end" in log
    assert "[stderr] again [REDACTED]" in log


def test_a_secret_split_across_chunks_is_still_redacted() -> None:
    """Deterministic: the collector gets the secret in two chunks, as a pipe may deliver it."""
    import io

    from dotagent.runner.foreground import _redact_line
    from dotagent.runner.output import OutputCollector

    secret = "hunter2-very-secret"
    log = io.BytesIO()
    collector = OutputCollector(log, redact=_redact_line)
    redaction.register_secret(secret)
    try:
        collector("stdout", b"token=" + secret[:7].encode())
        collector("stdout", secret[7:].encode() + b" ok\n")
        collector("stderr", secret.encode())  # no newline: flushed at close
        collector.close()
    finally:
        redaction.clear_secrets()
    text = log.getvalue().decode()
    assert secret not in text
    assert text == "token=[REDACTED] ok\n[stderr] [REDACTED]\n"
