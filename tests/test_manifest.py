from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dotagent.manifest import (
    FALLBACK_POLICY,
    CronSchedule,
    parse_manifest,
    slug_for,
)

BASE = """\
[agent]
name = "report"

[run]
command = "python3"
args = ["report.py"]

[[schedules]]
id = "daily"
type = "cron"
weekdays = [1, 2, 3, 4, 5]
hours = [8]
minute = 30
"""


def load(text: str):
    return parse_manifest(textwrap.dedent(text).encode(), Path("agents/x/agent.toml"))


def errors(text: str) -> list[str]:
    return [str(p) for p in load(text).errors]


def warnings(text: str) -> list[str]:
    return [str(p) for p in load(text).warnings]


def test_valid_manifest_loads_with_defaults() -> None:
    r = load(BASE)
    assert r.ok, r.errors
    m = r.manifest
    assert m is not None
    assert m.agent.name == "report"
    assert m.agent.monitor is True
    assert m.agent.timeout_seconds == 1800
    assert m.env.inherit is True and m.env.extra == {}
    sched = m.schedules[0]
    assert isinstance(sched, CronSchedule)
    assert (sched.weekdays, sched.hours, sched.minute) == ([1, 2, 3, 4, 5], [8], 30)
    assert m.policy(sched, salt=b"") == FALLBACK_POLICY
    assert m.security is None
    assert r.warnings == []


def test_error_format_names_file_line_and_field() -> None:
    text = BASE.replace("minute = 30", "minute = 75")
    assert errors(text) == [
        "agents/x/agent.toml:13: schedules[0].minute: 75 is out of range (0..59)"
    ]


def test_all_errors_of_a_file_are_reported_at_once() -> None:
    text = """\
    [agent]
    name = "../evil"
    [run]
    command = ""
    [[schedules]]
    id = "a"
    type = "cron"
    weekdays = [7]
    hours = [24]
    [[schedules]]
    id = "a"
    type = "interval"
    interval_minutes = 0
    """
    assert errors(text) == [
        "agents/x/agent.toml:2: agent.name: '../evil' contains '/' "
        "(use letters, digits, '-', '_' and '.')",
        "agents/x/agent.toml:4: run.command: must not be empty",
        "agents/x/agent.toml:8: schedules[0].weekdays[0]: 7 is out of range (0..6)",
        "agents/x/agent.toml:9: schedules[0].hours[0]: 24 is out of range (0..23)",
        "agents/x/agent.toml:11: schedules[1].id: duplicate schedule id 'a' "
        "(already used by schedules[0])",
        "agents/x/agent.toml:13: schedules[1].interval_minutes: 0 is out of range (1..5270400)",
    ]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('name = "report"', 'name = ""', "agent.name: must not be empty"),
        ('name = "report"', 'name = "."', "agent.name: '.' is not allowed"),
        ('name = "report"', 'name = "a b"', "agent.name: 'a b' contains ' '"),
        ('name = "report"', f'name = "{"x" * 65}"', "agent.name: is 65 characters long"),
        ('name = "report"', "name = 5", "agent.name: expected a string, got an integer (5)"),
        ('id = "daily"', 'id = "d/../x"', "schedules[0].id: 'd/../x' contains '/'"),
        ('type = "cron"', 'type = "weekly"', 'schedules[0].type: "weekly" is not a valid type'),
        ("hours = [8]", "hours = [-1]", "schedules[0].hours[0]: -1 is out of range (0..23)"),
        ("hours = [8]", 'hours = "8"', "schedules[0].hours: expected an array, got a string"),
        ("minute = 30", "minute = true",
         "schedules[0].minute: expected an integer, got a boolean (true)"),
        ('args = ["report.py"]', 'args = ["a", 1]',
         "run.args[1]: expected a string, got an integer (1)"),
        ('command = "python3"', 'command = "  "', "run.command: must not be empty"),
    ],
)
def test_field_rules(replace: str, by: str, expected: str) -> None:
    text = BASE.replace(replace, by)
    assert text != BASE
    found = errors(text)
    assert any(expected in e for e in found), found


def test_missing_required_fields() -> None:
    text = """\
    [agent]
    [[schedules]]
    id = "x"
    """
    found = errors(text)
    assert "agents/x/agent.toml:1: agent.name: required field is missing" in found
    assert any(e.endswith("run: required field is missing") for e in found)
    assert any("schedules[0].type: required field is missing" in e for e in found)


def test_at_least_one_schedule_is_required() -> None:
    text = BASE.split("[[schedules]]")[0]
    assert any("schedules: at least one [[schedules]] entry is required" in e
               for e in errors(text))
    assert any("at least one" in e for e in errors(text + "schedules = []\n"))


def test_cron_weekday_and_minute_ranges_accept_bounds() -> None:
    text = BASE.replace("weekdays = [1, 2, 3, 4, 5]", "weekdays = [0, 6]").replace(
        "hours = [8]", "hours = [0, 23]").replace("minute = 30", "minute = 59")
    assert load(text).ok


def test_interval_and_expression_schedules() -> None:
    text = BASE + textwrap.dedent("""
    [[schedules]]
    id = "often"
    type = "interval"
    interval_minutes = 1

    [[schedules]]
    id = "cal"
    type = "expression"
    expression = "Mon *-*-* 06:30"
    timezone = "Europe/Berlin"
    """)
    r = load(text)
    assert r.ok, [str(e) for e in r.errors]


def test_timezone_must_be_known_and_not_on_interval() -> None:
    bad_zone = BASE + 'timezone = "Mars/Olympus"\n'
    assert any("'Mars/Olympus' is not a known time zone" in e for e in errors(bad_zone))
    interval = """\
    [agent]
    name = "a"
    [run]
    command = "true"
    [[schedules]]
    id = "i"
    type = "interval"
    interval_minutes = 5
    timezone = "UTC"
    """
    assert any("schedules[0].timezone: does not apply to interval schedules" in e
               for e in errors(interval))


def test_toml_syntax_error_gives_file_and_line() -> None:
    found = errors('[agent]\nname = "x"\nbroken = \n')
    assert len(found) == 1
    assert found[0].startswith("agents/x/agent.toml:3: TOML syntax error: ")


def test_non_utf8_file_is_an_error_not_a_crash() -> None:
    r = parse_manifest(b'[agent]\nname = "\xff"\n', Path("a/agent.toml"))
    assert [str(e) for e in r.errors] == ["a/agent.toml:2: file is not valid UTF-8"]


def test_unknown_keys_warn_with_suggestion() -> None:
    text = BASE.replace("minute = 30", "minute = 30\nminutes = 5").replace(
        "[run]", "[run]\nworkdir = \"x\"")
    r = load(text)
    assert r.ok
    found = [str(w) for w in r.warnings]
    assert "agents/x/agent.toml:5: run.workdir: unknown key, ignored (did you mean " \
           "'working_dir'?)" in found
    assert any(w.startswith("agents/x/agent.toml:15: schedules[0].minutes: unknown key") and
               "did you mean 'minute'?" in w for w in found)


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    r = load(BASE.replace("[agent]", "[agent]\nzzz = 1"))
    assert any("agent.zzz: unknown key, ignored (known keys: name," in str(w)
               for w in r.warnings)


def test_unknown_event_filter_warns() -> None:
    text = BASE + '[[on_failure]]\nplugin = "notify-x"\nevents = ["gave_up"]\n'
    found = warnings(text)
    assert any("on_failure[0].events[0]: 'gave_up' is not an event" in w for w in found)


# -- clamps (threat model V7) ------------------------------------------------------------
@pytest.mark.parametrize(
    ("snippet", "field", "declared", "effective", "policy"),
    [
        ("[defaults]\nmax_retries = 1000000\n", "defaults.max_retries", 1000000, 32, None),
        ("[defaults]\nretry_backoff_minutes = [0, 5]\n", "defaults.retry_backoff_minutes[0]",
         0, 1, [1, 5]),
        ("[defaults]\nretry_backoff_minutes = []\n", "defaults.retry_backoff_minutes", [], [1],
         [1]),
    ],
)
def test_policy_clamps(snippet: str, field: str, declared: object, effective: object,
                       policy: list[int] | None) -> None:
    r = load(BASE + snippet)
    assert r.ok
    assert [(c.field, c.declared, c.effective) for c in r.clamps] == [
        (field, declared, effective)]
    assert any(field in str(w) and "→" in str(w) for w in r.warnings)
    m = r.manifest
    assert m is not None
    pol = m.policy(m.schedules[0], salt=b"")
    if policy is None:
        assert pol.max_retries == 32
    else:
        assert list(pol.retry_backoff_minutes) == policy


@pytest.mark.parametrize(("declared", "effective"), [(0, 1), (10**9, 604800)])
def test_timeout_clamps(declared: int, effective: int) -> None:
    r = load(BASE.replace('name = "report"', f'name = "report"\ntimeout_seconds = {declared}'))
    assert r.ok
    assert r.manifest is not None and r.manifest.agent.timeout_seconds == effective
    assert [str(w) for w in r.warnings] == [
        f"agents/x/agent.toml:3: agent.timeout_seconds: {declared} → {effective} "
        "(safety limit: 1..604800 seconds)"]


def test_schedule_level_clamp_and_negative_is_error() -> None:
    text = BASE + "max_retries = 99\n"
    r = load(text)
    assert r.manifest is not None
    assert r.manifest.policy(r.manifest.schedules[0], salt=b"").max_retries == 32
    neg = load(BASE.replace('name = "report"', 'name = "report"\ntimeout_seconds = -1'))
    assert any("agent.timeout_seconds: -1 is out of range" in str(e) for e in neg.errors)


def test_policy_precedence() -> None:
    text = BASE.replace("[run]", "[defaults]\nmax_retries = 1\nstale_after_minutes = 10\n[run]")
    text += "retry_backoff_minutes = [2]\n"
    r = load(text)
    m = r.manifest
    assert m is not None
    pol = m.policy(m.schedules[0], salt=b"")
    assert (pol.max_retries, pol.retry_backoff_minutes, pol.stale_after_minutes) == (1, (2,), 10)
    assert pol.max_attempts == 2


# -- notifiers and security -----------------------------------------------------------------
def test_notifier_driver_requirements() -> None:
    text = BASE + textwrap.dedent("""
    [[notifiers]]
    driver = "slack"
    [[notifiers]]
    driver = "telegram"
    bot_token = "${TOKEN}"
    chat_id = 42
    parse_mode = "RTF"
    [[notifiers]]
    driver = "ntfy"
    topic = "alerts"
    """)
    found = errors(text)
    assert any("notifiers[0].webhook_url: required field is missing" in e for e in found)
    assert any("notifiers[1].parse_mode: \"RTF\" is not allowed" in e for e in found)
    assert not any("notifiers[2]" in e for e in found)


def test_security_section() -> None:
    ok = BASE + '[security]\nnetwork = ["api.example.com"]\nallowed_commands = ["python3"]\n'
    r = load(ok)
    assert r.ok and r.manifest is not None and r.manifest.security is not None
    assert r.manifest.security.network == ["api.example.com"]
    assert any('security.network: "maybe" is not allowed' in e
               for e in errors(BASE + '[security]\nnetwork = "maybe"\n'))


# -- slugs (SPEC S3.1, upstream-compatible) -------------------------------------------------
@pytest.mark.parametrize(
    ("args", "slug"),
    [
        ([], "default"),
        (["--period", "dia-anterior"], "period_dia-anterior"),
        (["foo bar"], "foo_bar"),
        (["--", "-x"], "x"),
        (["--Dry.Run!"], "dry_run"),
        (["--"], "default"),
        (["!!!"], "default"),
        (["a__b", "c"], "a_b_c"),
        (["Ünïcode"], "n_code"),
        (["../../etc/passwd"], "etc_passwd"),
    ],
)
def test_slug_table(args: list[str], slug: str) -> None:
    assert slug_for(args) == slug


def test_long_slug_is_bounded_and_stable() -> None:
    long = ["x" * 300]
    s = slug_for(long)
    assert len(s) == 128 and s == slug_for(long) and s != slug_for(["x" * 301])


def test_deeply_nested_toml_is_a_located_error_not_a_crash() -> None:
    text = ('[agent]\nname = "d"  # [[[ not counted\n[run]\ncommand = "true"\n'
            'args = ["[[[[", \'{{{{\']\nx = ' + "[" * 2500 + "\n" + "{a=[" * 2500 +
            "]}" * 2500 + "]" * 2500 + "\n")
    r = load(text)
    assert r.manifest is None
    # tomllib keeps no position here; the line is where the deepest value starts.
    assert [str(e) for e in r.errors] == [
        "agents/x/agent.toml:6: TOML syntax error: values are nested too deeply to be read "
        "(7500 levels)"]


def test_utf8_bom_is_accepted() -> None:
    r = parse_manifest(b"\xef\xbb\xbf" + BASE.encode(), Path("agents/x/agent.toml"))
    assert r.ok, [str(e) for e in r.errors]


def test_hook_errors_keep_the_plugin_field() -> None:
    found = errors(BASE + "[[preflight]]\n[[on_success]]\nplugin = 5\n"
                          '[[on_failure]]\nplugin = "../x"\n')
    assert any("preflight[0].plugin: required field is missing" in e for e in found), found
    assert any("on_success[0].plugin: expected a string" in e for e in found), found
    assert any("on_failure[0].plugin: '../x' contains '/'" in e for e in found), found


def test_a_list_with_an_error_still_reports_its_clamps() -> None:
    ok = load(BASE + "[defaults]\nretry_backoff_minutes = [0, 5]\n")
    bad = load(BASE + "[defaults]\nretry_backoff_minutes = [0, -3]\n")
    # The 0 is the same warning in both; the -3 is an error of its own.
    assert [str(w) for w in bad.warnings] == [str(w) for w in ok.warnings] == [
        "agents/x/agent.toml:15: defaults.retry_backoff_minutes[0]: 0 → 1 (safety limit: "
        "each step at least 1 minute)"]
    assert [str(e) for e in bad.errors] == [
        "agents/x/agent.toml:15: defaults.retry_backoff_minutes[1]: -3 is out of range "
        "(1..5270400)"]


def test_every_bad_env_extra_key_is_reported_at_its_own_path() -> None:
    text = BASE.replace("[run]", '[env]\nextra = { "B=C" = "1", OK = "2", "" = "3", '
                                  '"D=E" = "4", NUL = "a\\u0000b" }\n[run]')
    found = errors(text)
    assert found == [
        "agents/x/agent.toml:5: env.extra.\"B=C\": 'B=C' is not a usable environment variable "
        "name (no '=', no NUL, not empty)",
        "agents/x/agent.toml:5: env.extra.\"\": '' is not a usable environment variable name "
        "(no '=', no NUL, not empty)",
        "agents/x/agent.toml:5: env.extra.\"D=E\": 'D=E' is not a usable environment variable "
        "name (no '=', no NUL, not empty)",
        "agents/x/agent.toml:5: env.extra.NUL: contains a NUL character (\\u0000), which no "
        "program can receive"]


def test_warnings_are_sorted_by_line() -> None:
    text = BASE.replace('[agent]\nname = "report"', '[agent]\nname = "report"\nzzz = 1') + \
        "max_retries = 99\n"
    lines = [w.line or 0 for w in load(text).warnings]
    assert len(lines) == 2 and lines == sorted(lines)


def test_field_paths_quote_keys_that_are_not_bare() -> None:
    r = load(BASE.replace("[run]", '[run]\n"x.y" = 1\n"bad\\nkey" = 2'))
    found = [str(w) for w in r.warnings]
    assert any(w.startswith('agents/x/agent.toml:5: run."x.y": unknown key') for w in found)
    assert any(w.startswith('agents/x/agent.toml:6: run."bad\\nkey": unknown key')
               for w in found), found


def test_lines_inside_multi_line_arrays_and_inline_tables() -> None:
    text = """\
    schedules = [
      { id = "a", type = "cron", weekdays = [1], hours = [8] },
      { id = "b", type = "cron", weekdays = [1], hours = [8], minute = 75 },
    ]
    [agent]
    name = "inline"
    [run]
    command = "true"
    [defaults]
    retry_backoff_minutes = [
      5,
      -1,
    ]
    """
    found = errors(text)
    assert "agents/x/agent.toml:3: schedules[1].minute: 75 is out of range (0..59)" in found
    assert "agents/x/agent.toml:12: defaults.retry_backoff_minutes[1]: -1 is out of range " \
           "(1..5270400)" in found


def test_line_index_never_hangs_or_raises_on_odd_input() -> None:
    from dotagent._tomllines import LineIndex

    for text in ["[,]", "a = [,,]", "x = {", "= 1", "[[", "a = [1 2]", "\x00", "a=\"", "#"]:
        LineIndex(text)  # garbage in: no exception, no endless loop


# -- retry_backoff_seconds (ours) ----------------------------------------------------------
def test_backoff_in_seconds_and_which_table_decides() -> None:
    r = load(BASE.replace("[run]", "[defaults]\nretry_backoff_minutes = [5]\n[run]")
             + "retry_backoff_seconds = [2, 4]\n")
    assert r.ok, r.errors
    m = r.manifest
    assert m is not None
    pol = m.policy(m.schedules[0], salt=b"")
    assert pol.backoff_seconds == (2, 4)
    # the schedule sets none: the defaults' minutes, as seconds
    r = load(BASE.replace("[run]", "[defaults]\nretry_backoff_minutes = [5, 15]\n[run]"))
    assert r.manifest is not None
    assert r.manifest.policy(r.manifest.schedules[0], salt=b"").backoff_seconds == (300, 900)
    # a schedule's minutes win over the defaults' seconds
    r = load(BASE.replace("[run]", "[defaults]\nretry_backoff_seconds = [3]\n[run]")
             + "retry_backoff_minutes = [1]\n")
    assert r.manifest is not None
    assert r.manifest.policy(r.manifest.schedules[0], salt=b"").backoff_seconds == (60,)


def test_backoff_in_both_units_in_one_table_is_an_error() -> None:
    assert errors(BASE + "retry_backoff_minutes = [1]\nretry_backoff_seconds = [30]\n") == [
        "agents/x/agent.toml:15: schedules[0].retry_backoff_seconds: retry_backoff_minutes is "
        "also set in this table; give the backoff in one unit (retry_backoff_seconds for steps "
        "under a minute)"]
    found = errors(BASE.replace("[run]", "[defaults]\nretry_backoff_minutes = [1]\n"
                                "retry_backoff_seconds = [1]\n[run]"))
    assert len(found) == 1 and "defaults.retry_backoff_seconds: retry_backoff_minutes" in found[0]


def test_backoff_seconds_clamps_and_ranges() -> None:
    assert warnings(BASE + "retry_backoff_seconds = [0, 5]\n") == [
        "agents/x/agent.toml:14: schedules[0].retry_backoff_seconds[0]: 0 → 1 (safety limit: "
        "each step at least 1 second)"]
    assert any("schedules[0].retry_backoff_seconds[0]: -1 is out of range" in e
               for e in errors(BASE + "retry_backoff_seconds = [-1]\n"))
