"""The worker slots: critical path first, then first come first served; the orchestrator needs none;
cancellation never leaks or loses a slot."""

from __future__ import annotations

import asyncio

from agent_scripts import complete, orchestrator, policy, worker
from agentray.engine._state import ChangeNotifier, Slots
from agentray.simulator import tool_use
from conftest import SimEngineFactory


async def _started(slots: Slots, agent_id: str, order: list[str]) -> None:
    await slots.acquire(agent_id)
    order.append(agent_id)


async def _queue(slots: Slots, ids: list[str], order: list[str]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(_started(slots, i, order)) for i in ids]
    for _ in range(3):
        await asyncio.sleep(0)  # let each reach its await: no time passes
    return tasks


async def test_longest_chain_first_then_arrival_order() -> None:
    chain = {"a": 0, "b": 2, "c": 1, "d": 2}
    slots = Slots(1, priority=lambda agent_id: chain.get(agent_id, 0))
    order: list[str] = []
    await slots.acquire("holder")
    tasks = await _queue(slots, ["a", "b", "c", "d"], order)
    assert slots.waiting == ["a", "b", "c", "d"] and order == []
    for expected in (["b"], ["b", "d"], ["b", "d", "c"], ["b", "d", "c", "a"]):
        slots.release(order[-1] if order else "holder")
        await asyncio.sleep(0)
        assert order == expected
    await asyncio.gather(*tasks)
    assert slots.holders == {"a"}


async def test_an_agent_under_way_comes_before_one_that_asked_first() -> None:
    """Same chain length: the agent that already had a slot (its next turn) before a new one,
    even one that asked earlier; among new ones, the first to ask."""
    slots = Slots(1)
    order: list[str] = []
    await slots.acquire("again")  # under way: had a slot, gives it back between turns
    slots.release("again")
    await slots.acquire("holder")
    tasks = await _queue(slots, ["new", "other"], order)
    tasks += await _queue(slots, ["again"], order)
    assert slots.waiting == ["new", "other", "again"]
    for expected in (["again"], ["again", "new"], ["again", "new", "other"]):
        slots.release(order[-1] if order else "holder")
        await asyncio.sleep(0)
        assert order == expected
    await asyncio.gather(*tasks)


async def test_priority_is_read_when_the_slot_frees_not_when_asked() -> None:
    chain = {"a": 0, "b": 0}
    slots = Slots(1, priority=lambda agent_id: chain.get(agent_id, 0))
    order: list[str] = []
    await slots.acquire("holder")
    tasks = await _queue(slots, ["a", "b"], order)
    chain["b"] = 3  # b gained dependents while it waited
    slots.release("holder")
    await asyncio.sleep(0)
    assert order == ["b"]
    slots.release("b")
    await asyncio.gather(*tasks)
    assert order == ["b", "a"]


async def test_exact_capacity_and_one_more() -> None:
    slots = Slots(2)
    order: list[str] = []
    tasks = await _queue(slots, ["a", "b", "c"], order)
    assert order == ["a", "b"] and slots.waiting == ["c"]
    slots.release("a")
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"] and slots.holders == {"b", "c"}


async def test_releasing_twice_or_a_non_holder_frees_nothing_extra() -> None:
    slots = Slots(1)
    order: list[str] = []
    await slots.acquire("a")
    tasks = await _queue(slots, ["b", "c"], order)
    slots.release("a")
    slots.release("a")
    slots.release("nobody")
    await asyncio.sleep(0)
    assert order == ["b"] and slots.holders == {"b"} and slots.waiting == ["c"]
    slots.release("b")
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_leaves_the_queue_and_a_granted_one_gives_back() -> None:
    slots = Slots(1)
    order: list[str] = []
    await slots.acquire("holder")
    tasks = await _queue(slots, ["a", "b"], order)
    tasks[0].cancel()
    await asyncio.sleep(0)
    assert slots.waiting == ["b"]
    # granted and cancelled in the same moment: the slot goes on to nobody, not lost
    slots.release("holder")
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert slots.holders == set() and slots.waiting == []
    await asyncio.wait_for(slots.acquire("c"), 1)
    assert slots.holders == {"c"}


async def test_the_orchestrator_needs_no_slot() -> None:
    slots = Slots(1)
    slots.exempt.add("a001")
    await slots.acquire("a002")
    await asyncio.wait_for(slots.acquire("a001"), 1)  # would block if it needed one
    assert slots.holders == {"a002"}
    slots.release("a001")
    assert slots.holders == {"a002"}


async def test_holder_acquiring_again_does_not_take_a_second_slot() -> None:
    slots = Slots(2)
    await slots.acquire("a")
    await slots.acquire("a")
    assert slots.holders == {"a"}
    await asyncio.wait_for(slots.acquire("b"), 1)
    assert slots.holders == {"a", "b"}


async def test_the_engine_starts_the_head_of_the_longest_chain_first(
    sim_engine: SimEngineFactory,
) -> None:
    """max_concurrent=1, a worker holding the slot; then a leaf (asked first) and the head of a
    chain of two: the chain's head gets the slot first."""
    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("spawn_agent", task="W-HOLD keeps the slot a moment")],
                [
                    tool_use("spawn_agent", task="W-LEAF nobody waits for me"),
                    tool_use("spawn_agent", task="W-HEAD two wait for me"),
                    tool_use("spawn_agent", task="W-NEXT after the head", depends_on=["a004"]),
                    tool_use("spawn_agent", task="W-LAST after the next", depends_on=["a005"]),
                ],
                [tool_use("await_agents")],
                [tool_use("finish", summary="done", outcome="success")],
            ),
            worker("W-HOLD", [tool_use("run_command", command="sleep 0.4")], complete("held")),
            worker("W-LEAF", complete("leaf")),
            worker("W-HEAD", complete("head")),
            worker("W-NEXT", complete("next")),
            worker("W-LAST", complete("last")),
        )
    )
    _, outcome = await se.run(max_concurrent=1)
    assert outcome.status == "succeeded", outcome
    firsts = [r.sim.first_user_text for r in se.sim.message_requests]
    order = [
        m
        for text in firsts
        for m in ("W-HOLD", "W-LEAF", "W-HEAD", "W-NEXT", "W-LAST")
        if m in text
    ]
    workers = [m for i, m in enumerate(order) if m not in order[:i]]
    assert workers.index("W-HEAD") < workers.index("W-LEAF"), workers
    assert workers[-1] == "W-LAST"


async def test_a_stop_that_meets_a_change_still_stops_the_waiter() -> None:
    """A monitor (await_agents, sleep) cancelled in the same moment a change wakes it ends
    cancelled; it never swallows the cancellation and waits again (Stop would hang)."""
    for timeout_s in (None, 60.0):
        changes = ChangeNotifier()
        waiting = asyncio.create_task(changes.wait_for(lambda: False, timeout_s))
        for _ in range(3):
            await asyncio.sleep(0)  # it reaches its wait: no time passes
        assert changes._waiters, "the monitor waits"
        changes.notify()
        waiting.cancel()
        async with asyncio.timeout(5):
            await asyncio.wait([waiting])
        assert waiting.cancelled()
        assert not changes._waiters  # and left nothing registered


async def test_a_change_wakes_the_waiter_and_a_timeout_says_false() -> None:
    changes = ChangeNotifier()
    flag = [False]
    waiting = asyncio.create_task(changes.wait_for(lambda: flag[0], None))
    for _ in range(3):
        await asyncio.sleep(0)
    changes.notify()  # a change that does not make it true: it waits on
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiting.done()
    flag[0] = True
    changes.notify()
    assert await waiting is True
    assert await changes.wait_for(lambda: False, 0.01) is False
    assert await changes.wait_for(lambda: True, 0) is True
