"""Load shapes, the user metaclass, task tables, dispatch maths and the
response helpers, in process."""

from __future__ import annotations

import asyncio

import pytest
from aiotest import AsyncHttpUser, ConfigError, LoadTestShape, User, tag, task
from aiotest._core import assign_user_indexes, spawn_order, user_counts
from aiotest.http import Headers, _with_default
from aiotest.shape import LoadStep, StagesShape, follow_shape, unpack_step
from aiotest.user import task_table

pytestmark = pytest.mark.pythons


class Shop(User):
    @task(3)
    def browse(self) -> None: ...

    @tag("checkout")
    @task
    def buy(self) -> None: ...

    @task(0)
    def never(self) -> None: ...


class BigShop(Shop):
    @task(2)
    def search(self) -> None: ...


def test_the_metaclass_collects_tasks_with_weights_and_inherits_them() -> None:
    assert [(fn.__name__, w) for fn, w in Shop.tasks] == [("browse", 3), ("buy", 1), ("never", 0)]
    assert [fn.__name__ for fn, _ in BigShop.tasks] == ["browse", "buy", "never", "search"]
    assert Shop.abstract is False and User.abstract is True and AsyncHttpUser.abstract is True


def test_tasks_as_a_list_or_a_dict_and_bad_ones_refused() -> None:
    def a(user: object) -> None: ...

    def b(user: object) -> None: ...

    class Listed(User):
        tasks = [a, (b, 4)]

    class Mapped(User):
        tasks = {a: 2, b: 1}

    assert [(fn, w) for fn, w in Listed.tasks] == [(a, 1), (b, 4)]
    assert [(fn, w) for fn, w in Mapped.tasks] == [(a, 2), (b, 1)]
    with pytest.raises(ConfigError, match="give functions"):

        class Bad(User):
            tasks = ["not a function"]

    with pytest.raises(ConfigError, match="whole number"):
        task(-1)(a)


def test_task_tables_filter_by_tag_and_drop_weight_zero() -> None:
    names = lambda table: [fn.__name__ for fn in table[0]]  # noqa: E731
    assert task_table(Shop, (), ()) == (
        [Shop.tasks[0][0], Shop.tasks[1][0]],
        [3, 4],
    )
    assert names(task_table(Shop, ["checkout"], ())) == ["buy"]
    assert names(task_table(Shop, (), ["checkout"])) == ["browse"]


def test_shape_steps_are_checked() -> None:
    class Dummy(User):
        @task
        def t(self) -> None: ...

    assert unpack_step((5, 2)) == LoadStep(5, 2.0, None)
    assert unpack_step((5, 2, [Dummy])) == LoadStep(5, 2.0, (Dummy,))
    for bad in [(-1, 1), (1, 0), (1, float("inf")), "10 users", (1,), (1.5, 1)]:
        with pytest.raises(ConfigError, match="tick\\(\\) returned"):
            unpack_step(bad)


def test_stages_shape_walks_its_stages() -> None:
    shape = StagesShape([(4, None, 10.0), (8, 2.0, 5.0)], default_spawn_rate=1.0)
    shape.start_time -= 12
    assert shape.tick() == (8, 2.0)
    shape.start_time -= 10
    assert shape.tick() is None


def test_follow_shape_applies_changes_and_stops_on_a_bad_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = iter([(1, 1.0), (2, 1.0), (2, 1.0), "garbage"])

    class Script(LoadTestShape):
        def tick(self):  # type: ignore[no-untyped-def]
            return next(steps)

    monkeypatch.setattr("aiotest.shape.TICK_INTERVAL_S", 0)
    applied: list[LoadStep] = []
    done = asyncio.Event()
    with pytest.raises(ConfigError):
        asyncio.run(follow_shape(Script(), (1, 1.0), applied.append, done))
    assert applied == [LoadStep(2, 1.0)] and not done.is_set()


def test_dispatch_maths() -> None:
    assert user_counts([1.0, 3.0], [0, 0], 8) == [2, 6]
    assert user_counts([1.0, 1.0], [5, 0], 6) == [5, 1]
    order = spawn_order([1, 3])
    assert sorted(order) == [0, 1, 1, 1] and order[:2].count(1) >= 1
    owned = assign_user_indexes([[[0, 1]], [[2]]], [[2], [2]])
    assert owned[0] == [[0, 1]] and sorted(owned[0][0] + owned[1][0]) == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        user_counts([-1.0], [0], 1)


def test_headers_are_case_blind_and_defaults_never_override() -> None:
    h = Headers([("Content-Type", "a"), ("set-cookie", "x=1"), ("Set-Cookie", "y=2")])
    assert h["content-type"] == "a" and h["SET-COOKIE"] == "x=1, y=2" and len(h) == 2
    given = {"content-type": "text/plain"}
    assert _with_default(given, "Content-Type", "application/json") is given
    assert _with_default({}, "Content-Type", "application/json") == {
        "Content-Type": "application/json"
    }


def test_loads_out_of_bounds_are_refused_with_the_bounds() -> None:
    from aiotest.shape import MAX_USERS

    with pytest.raises(ConfigError, match="from 0 to 10,000,000"):
        unpack_step((10**12, 1.0))
    with pytest.raises(ConfigError, match="at most 1,000,000"):
        unpack_step((10, float("inf")))
    assert unpack_step((MAX_USERS, 1e6)) == LoadStep(MAX_USERS, 1e6)


def test_swarm_form_bounds(demo_target) -> None:  # type: ignore[no-untyped-def]
    from aiotest import Environment
    from aiotest.web import parse_swarm

    class Shopper(AsyncHttpUser):
        @task
        async def t(self) -> None: ...

    env = Environment(user_classes=[Shopper], host=demo_target.url)
    req = parse_swarm("user_count=5&spawn_rate=2", "application/x-www-form-urlencoded", env)
    assert (req.users, req.spawn_rate) == (5, 2.0)
    for body, problem in [
        ("user_count=1000000000000", "user_count='1000000000000'"),
        ("user_count=5&spawn_rate=inf", "spawn_rate='inf'"),
        ("user_count=5&spawn_rate=nan", "spawn_rate='nan'"),
        ("user_count=-1", "user_count='-1'"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            parse_swarm(body, "application/x-www-form-urlencoded", env)


def test_markov_chains_are_checked_when_the_class_is_made() -> None:
    from aiotest.taskset import MarkovTaskSet, transition, transitions

    class Walk(MarkovTaskSet):
        @transition("b")
        def a(self) -> None: ...

        @transitions({"a": 3, "b": 1})
        def b(self) -> None: ...

    assert Walk.markov_chain == {"a": (["b"], [1]), "b": (["a", "b"], [3, 1])}
    with pytest.raises(ConfigError, match="no Markov tasks"):

        class Empty(MarkovTaskSet):
            def a(self) -> None: ...

    with pytest.raises(ConfigError, match="which does not exist"):

        class Dangling(MarkovTaskSet):
            @transition("nowhere")
            def a(self) -> None: ...

    with pytest.raises(ConfigError, match="has no transitions of its own"):

        class DeadEnd(MarkovTaskSet):
            @transition("b")
            def a(self) -> None: ...

            def b(self) -> None: ...

    with pytest.raises(ConfigError, match="whole numbers above 0"):

        class Weightless(MarkovTaskSet):
            @transition("a", weight=0)
            def a(self) -> None: ...
