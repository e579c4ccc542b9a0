"""The options of a run: :class:`RunOptions`, parsed once from the command
line, the environment and config files, and the options an aiotestfile
adds to the command line, in Locust's habits::

    @events.init_command_line_parser.add_listener
    def _(parser):
        parser.add_argument("--shop-id", type=int, default=1, env_var="AIOTEST_SHOP_ID",
                            help="the shop to load")

The value is then ``environment.parsed_options.shop_id``. Such options parse
like the built-in ones (command line, then the environment variable, then a
config file, then the default), and in distributed mode the master's values
reach every worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .exceptions import ConfigError


@dataclass(frozen=True)
class CustomOption:
    """One declared option.

    Attributes:
        long: The long name without dashes (``shop-id``).
        dest: The attribute on ``parsed_options`` (``shop_id``).
    """

    long: str
    dest: str
    type: Callable[[str], Any]
    default: Any
    help: str
    env_var: str | None
    flag: bool
    choices: Sequence[Any] | None
    #: Locust's web UI hints: shown in the start form, masked, required,
    #: several values (a comma-separated list on the command line).
    include_in_web_ui: bool = True
    is_secret: bool = False
    is_required: bool = False
    is_multiple: bool = False

    @property
    def is_flag(self) -> bool:
        """A yes/no option: ``store_true``, or a boolean default (a checkbox
        in the web UI's start form)."""
        return self.flag or isinstance(self.default, bool)

    def convert(self, items: Sequence[Any]) -> Any:
        """``items`` (one, or several with ``is_multiple``) converted by
        ``type`` and checked against ``choices``: the option's value.

        Raises:
            ConfigError: A value ``type`` rejects, or one not in ``choices``.
        """
        values = []
        for item in items:
            try:
                value = self.type(item)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"--{self.long} {item!r}: {exc}: give a valid value") from None
            if self.choices is not None and value not in self.choices:
                choices = ", ".join(map(str, self.choices))
                raise ConfigError(f"--{self.long} {value!r}: pick one of {choices}")
            values.append(value)
        return values if self.is_multiple else values[0]


class OptionParser:
    """What ``events.init_command_line_parser`` listeners get as ``parser``:
    the part of argparse's ``add_argument`` that Locust scripts use."""

    def __init__(self) -> None:
        self.options: list[CustomOption] = []

    def add_argument(
        self,
        *names: str,
        type: Callable[[str], Any] = str,
        default: Any = None,
        help: str = "",
        env_var: str | None = None,
        action: str | None = None,
        choices: Sequence[Any] | None = None,
        dest: str | None = None,
        include_in_web_ui: bool = True,
        is_secret: bool = False,
        is_required: bool = False,
        is_multiple: bool = False,
        **_ignored: Any,
    ) -> None:
        """Declares ``--name``. ``action="store_true"`` makes a flag; with
        ``is_multiple`` a value is a comma-separated list (``--endpoints
        a,b``), each item checked against ``choices``. ``include_in_web_ui``,
        ``is_secret`` and ``is_required`` are Locust's hints for its web UI,
        kept on the option. A default is not checked against ``choices``
        (argparse's habit: ``default=["a"]`` with ``choices="abc"``).

        Raises:
            ConfigError: No ``--long`` name, or an action other than
                ``store``/``store_true``.
        """
        longs = [n[2:] for n in names if n.startswith("--") and len(n) > 2]
        if not longs:
            raise ConfigError(
                f"parser.add_argument{names!r}: give a long name such as '--my-option'"
            )
        if action not in (None, "store", "store_true"):
            raise ConfigError(
                f"parser.add_argument('--{longs[0]}', action={action!r}): "
                "only 'store' and 'store_true' are supported"
            )
        flag = action == "store_true"
        self.options.append(
            CustomOption(
                long=longs[0],
                dest=dest or longs[0].replace("-", "_"),
                type=type,
                default=False if flag and default is None else default,
                help=help + (f" [default: {default}]" if default not in (None, "", False) else ""),
                env_var=env_var,
                flag=flag,
                choices=choices,
                include_in_web_ui=include_in_web_ui,
                is_secret=is_secret,
                is_required=is_required,
                is_multiple=is_multiple,
            )
        )

    def add_argument_group(self, *_args: Any, **_kwargs: Any) -> OptionParser:
        """Groups are for help layout only; the parser itself serves."""
        return self

    def for_core(self) -> list[tuple[str, str, str | None, bool]]:
        """The declarations as ``_core.parse_options`` takes them."""
        return [(o.long, o.help, o.env_var, o.flag) for o in self.options]

    def values(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Converts what the command line gave (strings, flags, None) with
        each option's ``type``, filling in defaults.

        Raises:
            ConfigError: A value ``type`` rejects, or one not in ``choices``.
        """
        out: dict[str, Any] = {}
        for o in self.options:
            given = raw.get(o.long.replace("-", "_"))
            if given is None or o.flag:
                out[o.dest] = given if o.flag else o.default
                continue
            items = [i.strip() for i in str(given).split(",")] if o.is_multiple else [given]
            out[o.dest] = o.convert(items)
        return out


@dataclass(frozen=True)
class ArrivalStage:
    """One ``--arrival-rate`` stage: ``rate_per_s`` iterations started per
    second for ``duration_s`` (None: until the run ends; last stage only)."""

    rate_per_s: float
    duration_s: float | None


@dataclass(frozen=True)
class PlanStage:
    """One ``--test-plan`` stage: ``users`` for ``duration_s``, ramped at
    ``spawn_rate_per_s`` (None: ``-r``)."""

    users: int
    spawn_rate_per_s: float | None
    duration_s: float


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, parsed once (by ``_core.parse_options``, in
    the precedence command line, environment variable, config file,
    default) and never changed after: a changed copy is made with
    :meth:`replace`. Names and units follow the command line (``-t`` is
    :attr:`run_time_s`); ``docs`` of each flag: ``aiotest --help``.

    The aiotestfile's own options (``events.init_command_line_parser``)
    are in :attr:`custom_options` and read as attributes too
    (``parsed_options.shop_id``), as in Locust.
    """

    aiotestfile: str = "aiotestfile.py"
    config: str | None = None
    host: str | None = None
    insecure: bool = False
    http_version: str | None = None
    users: int = 1
    spawn_rate: float = 1.0
    run_time_s: float | None = None
    arrival_rate: tuple[ArrivalStage, ...] | None = None
    test_plan: tuple[PlanStage, ...] | None = None
    headless: bool = False
    web_host: str = ""
    web_port: int = 8089
    #: Whether ``--web-port`` (or its variable or config key) was given: a
    #: worker serves its health endpoints only then.
    web_port_given: bool = False
    no_web_server: bool = False
    metrics_buckets_s: tuple[float, ...] = ()
    otlp_endpoint: str | None = None
    web_login: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    autostart: bool = False
    autoquit_s: float | None = None
    stop_timeout_s: float = 0.0
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    list: bool = False
    loglevel: str = "INFO"
    logfile: str | None = None
    exit_code_on_error: int = 1
    json: bool = False
    json_file: str | None = None
    only_summary: bool = False
    print_stats: bool = False
    reset_stats: bool = False
    csv_prefix: str | None = None
    csv_full_history: bool = False
    max_names: int = 2000
    html_file: str | None = None
    iterations: int | None = None
    checks: tuple[str, ...] = ()
    check_fail_ratio: float | None = None
    check_rps: float | None = None
    check_avg_response_time: float | None = None
    master: bool = False
    master_bind_host: str = "*"
    master_bind_port: int = 5557
    expect_workers: int = 1
    expect_workers_max_wait_s: float = 0.0
    worker: bool = False
    master_host: str = "127.0.0.1"
    master_port: int = 5557
    worker_exit_with_master: bool = False
    processes: int | None = None
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 3
    secret: str | None = field(default=None, repr=False)
    user_classes: tuple[str, ...] = ()
    custom_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The aiotestfile's option declarations (for the web UI's start form).
    custom_option_specs: tuple[CustomOption, ...] = ()

    @classmethod
    def from_parsed(cls, run: Mapping[str, Any], custom_options: Mapping[str, Any]) -> RunOptions:
        """Builds the options from ``_core.parse_options``' ``run`` object,
        with ``custom_options`` already converted (:meth:`OptionParser.values`).

        Raises:
            ConfigError: A key this version does not know (a mismatched build).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(run) - known)
        if unknown:
            raise ConfigError(f"unknown options {', '.join(unknown)}: reinstall aiotest")
        values = dict(run)
        values["web_port_given"] = values.get("web_port") is not None
        if values.get("web_port") is None:
            values["web_port"] = cls.web_port
        for key in ("tags", "exclude_tags", "checks", "user_classes", "metrics_buckets_s"):
            values[key] = tuple(values.get(key) or ())
        if values.get("arrival_rate"):
            values["arrival_rate"] = tuple(ArrivalStage(**s) for s in values["arrival_rate"])
        if values.get("test_plan"):
            values["test_plan"] = tuple(PlanStage(**s) for s in values["test_plan"])
        values["custom_options"] = MappingProxyType(dict(custom_options))
        return cls(**values).with_html_file_expanded()

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes``; ``custom_options`` given as a mapping is
        merged over the current ones."""
        if "custom_options" in changes:
            merged = {**self.custom_options, **changes["custom_options"]}
            changes["custom_options"] = MappingProxyType(merged)
        return dataclasses.replace(self, **changes)

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the custom options,
        # then Locust's names for ours.
        custom = self.__dict__.get("custom_options", {})
        if name in custom:
            return custom[name]
        if name in LOCUST_OPTION_NAMES:
            return getattr(self, LOCUST_OPTION_NAMES[name])
        raise AttributeError(f"no option named {name!r}")

    def with_html_file_expanded(self) -> RunOptions:
        """``--html`` with Locust's tags replaced: ``{u}`` the user count,
        ``{r}`` the spawn rate, ``{t}`` the run time in s (each a whole
        number; a tag whose value is unset stays)."""
        if not self.html_file:
            return self
        path = self.html_file
        for tag, value in (("{u}", self.users), ("{r}", self.spawn_rate), ("{t}", self.run_time_s)):
            if value is not None:
                path = path.replace(tag, str(int(value)))
        return self.replace(html_file=path)


#: Locust's ``parsed_options`` attribute names that differ from ours.
LOCUST_OPTION_NAMES = {
    "num_users": "users",
    "run_time": "run_time_s",
    "locustfile": "aiotestfile",
    "stop_timeout": "stop_timeout_s",
    "autoquit": "autoquit_s",
    "expect_workers_max_wait": "expect_workers_max_wait_s",
}


def resolve_aiotestfile(
    args: Sequence[str],
    environ: Mapping[str, str],
    file_values: Sequence[tuple[str, str, list[str]]],
) -> str:
    """The aiotestfile a command line runs, in the precedence every option
    has: ``-f``/``--aiotestfile`` in ``args`` (without the program name),
    else ``AIOTEST_AIOTESTFILE`` in ``environ``, else the last config file
    that sets ``aiotestfile``, else ``aiotestfile.py``. It is needed before
    the full parse, which then agrees with it: the file's
    ``init_command_line_parser`` listeners add options to that parse."""
    path: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("-f", "--aiotestfile", "--locustfile") and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith(("--aiotestfile=", "--locustfile=")):
            path = arg.split("=", 1)[1]
        elif arg.startswith("-f") and not arg.startswith("--") and len(arg) > 2:
            path = arg[2:].removeprefix("=")
    if path is not None:
        return path
    if environ.get("AIOTEST_AIOTESTFILE"):
        return environ["AIOTEST_AIOTESTFILE"]
    for _, key, values in file_values:
        if key in ("aiotestfile", "f") and values:
            path = values[0]
    return path or "aiotestfile.py"


def locust_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``AIOTEST_*`` variables that ``LOCUST_*`` ones in ``environ``
    stand for (``LOCUST_LOCUSTFILE`` is ``AIOTEST_AIOTESTFILE``), where the
    ``AIOTEST_*`` one is not set itself: Locust's environment carries over."""
    found = {}
    for key, value in environ.items():
        if not key.startswith("LOCUST_"):
            continue
        name = key.removeprefix("LOCUST_")
        ours = "AIOTEST_AIOTESTFILE" if name == "LOCUSTFILE" else f"AIOTEST_{name}"
        if ours not in environ:
            found[ours] = value
    return found
