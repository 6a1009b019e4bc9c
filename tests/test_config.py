import os
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from bot.config import SETTINGS, load_settings, read_env_file
from bot.errors import ConfigError
from testkit import ROOT


@pytest.mark.parametrize(("env", "name", "fragment"), [
    ({"THRESHOLD": "abc"}, "THRESHOLD", "a decimal number > 0 and <= 1"),
    ({"THRESHOLD": "1.5"}, "THRESHOLD", "<= 1"),
    ({"TRADING_MODE": "yolo"}, "TRADING_MODE", "one of paper, live"),
    ({"MARKETS": "BTC"}, "MARKETS", "KRW markets"),
    ({"MARKET": "KRW-BTC,ETH"}, "MARKETS", "KRW markets"),
    ({"FEE_RATE": "-0.0005"}, "FEE_RATE", ">= 0"),
    ({"UNIT": "2"}, "UNIT", "one of 1, 3, 5"),
    ({"TRADING_ENABLED": "maybe"}, "TRADING_ENABLED", "true or false"),
    ({"COLLECT_SCHEDULE": "every minute"}, "COLLECT_SCHEDULE", "5-field crontab"),
    ({"TIMEZONE": "Mars/Olympus"}, "TIMEZONE", "IANA time zone"),
    ({"ORDER_TIMEOUT_SECONDS": "1.5"}, "ORDER_TIMEOUT_SECONDS", "an integer"),
    ({"WEIGHTS": "trend=1,luck=2"}, "WEIGHTS", "name=weight pairs"),
    ({"MARKETS": " "}, "MARKETS", "empty: name at least one market"),
    ({"AGGRESSIVENESS": "0.0000001"}, "AGGRESSIVENESS", "at most 6 decimals"),
])
def test_bad_values_name_the_variable_the_value_and_what_is_allowed(env, name, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.name == name
    message = str(info.value)
    assert message.startswith(f"invalid setting {name}=")
    assert fragment in message
    assert "\n" not in message


def test_defaults_and_aliases():
    s = load_settings({})
    assert s.trading_mode == "paper" and not s.live
    assert s.markets == ("KRW-BTC",)
    # the defaults chosen from walk-forward evidence (README, "Defaults from evidence")
    assert s.threshold == Decimal("1")
    assert (s.stop_loss_pct, s.trailing_stop_pct, s.take_profit_pct) == (3, 0, 0)
    assert (s.cooldown_candles, s.stop_guard_exits, s.stop_guard_window_candles,
            s.stop_guard_pause_candles) == (60, 2, 120, 240)
    assert s.aggressiveness == Decimal("0.0015")
    assert s.timeframe == "1m"
    assert load_settings({"MARKET": "krw-eth"}).markets == ("KRW-ETH",)
    assert load_settings({"MARKETS": "KRW-BTC, KRW-ETH,KRW-BTC"}).markets == ("KRW-BTC", "KRW-ETH")


def test_settings_are_immutable():
    s = load_settings({"WEIGHTS": "trend=1"})
    with pytest.raises(AttributeError):
        s.threshold = Decimal("0.5")  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.weights["trend"] = 3.0  # type: ignore[index]


def test_secrets_never_in_messages_or_repr():
    s = load_settings({"TRADING_MODE": "live", "UPBIT_ACCESS_KEY": "AKIA-very-secret",
                       "UPBIT_SECRET_KEY": "SK-very-secret",
                       "DATABASE_URL": "postgresql://bot:hunter2@db:5432/bot"})
    text = repr(s) + str(s.public_summary())
    assert "AKIA-very-secret" not in text and "SK-very-secret" not in text
    assert "hunter2" not in str(s.public_summary())
    with pytest.raises(ConfigError) as info:
        load_settings({"DATABASE_URL": "mysql://bot:hunter2@db/bot"})
    assert "hunter2" not in str(info.value)


def test_env_example_lists_every_setting_with_its_default():
    example = read_env_file(ROOT / ".env.example")
    assert set(example) == {s.name for s in SETTINGS}
    for setting in SETTINGS:
        assert example[setting.name] == setting.default, setting.name
    # and the defaults written there parse to the same settings as no environment at all
    assert load_settings(example) == load_settings({})


def test_readme_configuration_table_matches_settings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", readme, flags=re.M))
    assert set(rows) == {s.name for s in SETTINGS}
    for setting in SETTINGS:
        assert rows[setting.name] == setting.default, setting.name


def test_no_module_reads_the_environment_except_config():
    offenders = []
    for path in (ROOT / "bot").rglob("*.py"):
        if path.name == "config.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"os\.environ|os\.getenv|getenv\(", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _run_cli(env_overrides, tmp_path):
    env = {"PATH": os.environ["PATH"], **env_overrides}
    return subprocess.run([sys.executable, "-m", "bot", "migrate"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", [{"THRESHOLD": "abc"}, {"TRADING_MODE": "yolo"},
                                 {"MARKETS": "BTC"}, {"FEE_RATE": "-1"},
                                 {"TRADING_MODE": "live"}])
def test_cli_exits_2_with_one_line(env, tmp_path):
    done = _run_cli(env, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(("bot: invalid setting ", "bot: missing setting"))
    assert "Traceback" not in done.stderr


def test_cli_refuses_a_bad_env_file_line(tmp_path):
    (tmp_path / ".env").write_text("THRESHOLD 0.3\n")
    done = _run_cli({}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"bot: {tmp_path}/.env: line 1: 'THRESHOLD 0.3' is not "
                                   "KEY=VALUE (write it as KEY=VALUE, or start the line with # "
                                   "to comment it out)")


def test_env_file_is_read_and_real_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("THRESHOLD=abc\n")
    assert _run_cli({}, tmp_path).returncode == 2
    done = _run_cli({"THRESHOLD": "0.3", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
                    tmp_path)
    assert done.returncode == 1  # got past the settings, failed on the database
    assert "database unavailable" in done.stderr


@pytest.mark.parametrize(("env", "names"), [
    ({"TRADING_MODE": "live"}, "UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY"),
    ({"TRADING_MODE": "live", "UPBIT_ACCESS_KEY": "ak"}, "UPBIT_SECRET_KEY"),
    ({"TRADING_MODE": "live", "UPBIT_SECRET_KEY": "sk"}, "UPBIT_ACCESS_KEY"),
])
def test_live_mode_names_every_missing_key_at_once(env, names):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(f"missing setting{'s' if ' and ' in names else ''} {names}: "
                              "required when TRADING_MODE=live")
    assert "redacted" not in message and "\n" not in message


def test_env_file_line_without_equals_is_an_error(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# comment\nMARKETS=KRW-BTC\nTHRESHOLD 0.3\n")
    with pytest.raises(ConfigError) as info:
        read_env_file(path)
    assert str(info.value) == (f"{path}: line 3: 'THRESHOLD 0.3' is not KEY=VALUE (write it as "
                               "KEY=VALUE, or start the line with # to comment it out)")


def test_env_file_error_never_shows_a_secret(tmp_path):
    path = tmp_path / ".env"
    path.write_text("UPBIT_SECRET_KEY sk-very-secret\n")
    with pytest.raises(ConfigError) as info:
        read_env_file(path)
    assert "sk-very-secret" not in str(info.value) and "line 1" in str(info.value)
