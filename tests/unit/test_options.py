"""The option parser, run options, config files and the check grammar, in
process (no subprocess, no server)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from aiotest import ConfigError
from aiotest._core import parse_options, validate_checks
from aiotest.config import read_conf, read_pyproject
from aiotest.options import ArrivalStage, OptionParser, PlanStage, RunOptions, resolve_aiotestfile
from aiotest.report import collect_checks

pytestmark = pytest.mark.pythons


def parse(*args: str, file_values: list[tuple[str, str, list[str]]] | None = None) -> RunOptions:
    kind, parsed, code = parse_options(["aiotest", *args], file_values or [], [])
    assert (kind, code) == ("run", 0), parsed
    return RunOptions.from_parsed(parsed["run"], {})


def test_every_option_the_core_parses_is_a_run_option() -> None:
    opts = parse("-u", "7", "-r", "2.5", "-t", "1m30s", "-T", "a", "-T", "b")
    assert (opts.users, opts.spawn_rate, opts.run_time_s) == (7, 2.5, 90.0)
    assert opts.tags == ("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.users = 8  # type: ignore[misc]
    assert opts.replace(users=8).users == 8 and opts.users == 7


def test_arrival_stages_and_test_plans_become_typed_stages() -> None:
    opts = parse("--arrival-rate", "10/s:5s,30/m", "--test-plan", "4@2:10s,0:5s")
    assert opts.arrival_rate == (ArrivalStage(10.0, 5.0), ArrivalStage(0.5, None))
    assert opts.test_plan == (PlanStage(4, 2.0, 10.0), PlanStage(0, None, 5.0))


def test_custom_options_read_as_attributes_and_merge_on_replace() -> None:
    opts = RunOptions.from_parsed(parse_options(["aiotest"], [], [])[1]["run"], {"shop_id": 3})
    assert opts.shop_id == 3
    assert opts.replace(custom_options={"shop_id": 4}).shop_id == 4
    with pytest.raises(AttributeError, match="no option named 'nope'"):
        _ = opts.nope


def test_an_unknown_parsed_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown options surprise"):
        RunOptions.from_parsed({"surprise": 1}, {})


def test_custom_option_values_are_converted_and_checked() -> None:
    parser = OptionParser()
    parser.add_argument("--shop-id", type=int, default=1)
    parser.add_argument("--mode", choices=["a", "b"], default="a")
    parser.add_argument("--fast", action="store_true")
    assert parser.values({"shop_id": "9", "mode": None, "fast": True}) == {
        "shop_id": 9,
        "mode": "a",
        "fast": True,
    }
    with pytest.raises(ConfigError, match="--shop-id 'x'"):
        parser.values({"shop_id": "x"})
    with pytest.raises(ConfigError, match="pick one of a, b"):
        parser.values({"mode": "c"})


@pytest.mark.parametrize(
    ("args", "environ", "files", "expected"),
    [
        (
            ["-f", "cli.py"],
            {"AIOTEST_AIOTESTFILE": "env.py"},
            [("c", "aiotestfile", ["file.py"])],
            "cli.py",
        ),
        (["--aiotestfile=cli.py"], {}, [], "cli.py"),
        (["-fcli.py"], {}, [], "cli.py"),
        ([], {"AIOTEST_AIOTESTFILE": "env.py"}, [("c", "aiotestfile", ["file.py"])], "env.py"),
        ([], {}, [("a", "aiotestfile", ["one.py"]), ("b", "aiotestfile", ["two.py"])], "two.py"),
        ([], {}, [], "aiotestfile.py"),
        (["--", "-f", "x.py"], {}, [], "aiotestfile.py"),
    ],
)
def test_the_aiotestfile_follows_the_documented_precedence(
    args: list[str], environ: dict[str, str], files: list[tuple[str, str, list[str]]], expected: str
) -> None:
    assert resolve_aiotestfile(args, environ, files) == expected


def test_the_early_aiotestfile_agrees_with_the_full_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [("c", "aiotestfile", ["file.py"])]
    monkeypatch.setenv("AIOTEST_AIOTESTFILE", "env.py")
    assert parse(file_values=files).aiotestfile == resolve_aiotestfile(
        [], {"AIOTEST_AIOTESTFILE": "env.py"}, files
    )
    assert parse("-f", "cli.py", file_values=files).aiotestfile == "cli.py"


def test_config_files_read_locust_conf_and_pyproject(tmp_path: Path) -> None:
    conf = tmp_path / "aiotest.conf"
    conf.write_text("# a comment\n[section]\nusers = 5\ntags = [a, 'b']\nheadless = true\n")
    assert read_conf(str(conf)) == [
        (str(conf), "users", ["5"]),
        (str(conf), "tags", ["a", "b"]),
        (str(conf), "headless", ["true"]),
    ]
    conf.write_text("users 5\n")
    with pytest.raises(ConfigError, match="expected `key = value`"):
        read_conf(str(conf))
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.aiotest]\nusers = 3\nheadless = true\ntags = ["x"]\n')
    assert [(k, v) for _, k, v in read_pyproject(str(pyproject))] == [
        ("users", ["3"]),
        ("headless", ["true"]),
        ("tags", ["x"]),
    ]
    assert parse(file_values=read_pyproject(str(pyproject))).users == 3


def test_the_check_grammar() -> None:
    validate_checks(["p95 < 200ms", "GET /items: p99 < 1s", "fail_ratio <= 0.01", "rps >= 10"])
    for bad in ["p95 <", "p101 < 2ms", "speed > 3"]:
        with pytest.raises(ConfigError):
            validate_checks([bad])
    opts = parse("--check", "p50 < 1s", "--check-fail-ratio", "0.1", "--check-rps", "5")
    assert collect_checks(opts) == ["p50 < 1s", "fail_ratio <= 0.1", "rps >= 5.0"]


def test_locust_names_carry_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiotest.config import config_file_values
    from aiotest.options import locust_variables

    assert locust_variables({"LOCUST_USERS": "5", "LOCUST_LOCUSTFILE": "l.py", "HOME": "/"}) == {
        "AIOTEST_USERS": "5",
        "AIOTEST_AIOTESTFILE": "l.py",
    }
    assert locust_variables({"LOCUST_USERS": "5", "AIOTEST_USERS": "6"}) == {}
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "locust.conf").write_text("locustfile = shop.py\nusers = 3\n")
    (tmp_path / "aiotest.conf").write_text("users = 4\n")
    values = config_file_values(str(tmp_path))
    assert [(k, v) for _, k, v in values] == [
        ("aiotestfile", ["shop.py"]),
        ("users", ["3"]),
        ("users", ["4"]),
    ]
    assert parse(file_values=values).users == 4
    assert resolve_aiotestfile(["--locustfile", "x.py"], {}, []) == "x.py"
    assert parse("--locustfile", "x.py").aiotestfile == "x.py"


def test_parsed_options_answer_to_locusts_names_and_html_tags() -> None:
    opts = RunOptions(
        users=50, spawn_rate=5.0, run_time_s=30.0, html_file="report_u{u}_r{r}_t{t}.html"
    ).with_html_file_expanded()
    assert opts.html_file == "report_u50_r5_t30.html"
    assert (opts.num_users, opts.run_time, opts.locustfile) == (50, 30.0, "aiotestfile.py")
    untimed = RunOptions(users=5, html_file="r_{u}_{t}.html").with_html_file_expanded()
    assert untimed.html_file == "r_5_{t}.html"  # no run time: the tag stays, as in Locust


def test_is_multiple_options_take_a_list_and_check_each_item() -> None:
    parser = OptionParser()
    parser.add_argument(
        "--endpoints", choices=["a", "b", "c"], is_multiple=True, default=["a"], is_secret=True
    )
    assert parser.values({"endpoints": None}) == {"endpoints": ["a"]}  # default unchecked
    assert parser.values({"endpoints": "a, c"}) == {"endpoints": ["a", "c"]}
    with pytest.raises(ConfigError, match="pick one of a, b, c"):
        parser.values({"endpoints": "a,d"})
    assert parser.options[0].is_secret and parser.options[0].include_in_web_ui
