"""Options an aiotestfile adds to the command line, in Locust's habits::

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
        **_ignored: Any,
    ) -> None:
        """Declares ``--name``. ``action="store_true"`` makes a flag.

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
                value = given if o.flag else o.default
            else:
                try:
                    value = o.type(given)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"--{o.long} {given!r}: {exc}: give a valid value") from None
            if o.choices is not None and value is not None and value not in o.choices:
                choices = ", ".join(map(str, o.choices))
                raise ConfigError(f"--{o.long} {value!r}: pick one of {choices}")
            out[o.dest] = value
        return out
