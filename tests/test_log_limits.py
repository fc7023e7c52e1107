"""`[logging] agent_log_max_mb` reaches the runs of every entry point."""

from __future__ import annotations

from pathlib import Path

from helpers import dotagent, simple_agent


def test_run_rotates_at_the_configured_size(tmp_path: Path, cli_env: dict[str, str],
                                            dotagent_home: Path) -> None:
    root = tmp_path / "agents"
    # 1.5 MiB of output in 1 KiB lines
    simple_agent(root, "loud", "python3",
                 ["-c", "import sys\nfor i in range(1536): sys.stdout.write('x' * 1023 + '\\n')"])
    cli_env["DOTAGENT_ROOT"] = str(root)
    config = dotagent_home / "config.toml"
    config.write_text("[logging]\nagent_log_max_mb = 1\nagent_log_keep = 2\n")
    config.chmod(0o600)
    p = dotagent("run", "loud", env=cli_env)
    assert p.returncode == 0, p.stderr
    logs = sorted((dotagent_home / "logs/agents/loud").iterdir())
    assert len(logs) == 2, logs  # the active log and one rotated part
    assert all(f.stat().st_size <= 1024 * 1024 for f in logs)


def test_a_broken_config_does_not_stop_a_run(tmp_path: Path, cli_env: dict[str, str],
                                             dotagent_home: Path) -> None:
    root = tmp_path / "agents"
    simple_agent(root, "quiet", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(root)
    (dotagent_home / "config.toml").write_text("[logging]\nagent_log_max_mb = 'big'\n")
    p = dotagent("run", "quiet", env=cli_env)
    assert p.returncode == 0
    assert "config.toml has errors" in p.stderr and "default log limits" in p.stderr
