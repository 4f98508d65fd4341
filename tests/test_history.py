"""History trimming: newest kept, tool-call groups never split, orphans never sent."""

from orchestrators.agent.history import trim_history


def call(i: str) -> dict:
    return {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_keeps_newest_within_budget() -> None:
    msgs = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i} " + "x" * 400} for i in range(20)
    ]
    kept = trim_history(msgs, budget=500)
    assert kept[-1] == msgs[-1]
    assert len(kept) < len(msgs)
    assert kept == msgs[-len(kept) :]


def test_tool_groups_stay_whole_or_go_whole() -> None:
    msgs = [
        {"role": "user", "content": "q1" + "x" * 2000},
        {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "r" * 1000},
        {"role": "tool", "tool_call_id": "b", "content": "r" * 1000},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "q2"},
    ]
    for budget in range(10, 1500, 25):
        kept = trim_history(msgs, budget)
        ids_called = [c["id"] for m in kept for c in m.get("tool_calls") or []]
        ids_answered = [m["tool_call_id"] for m in kept if m["role"] == "tool"]
        assert sorted(ids_called) == sorted(ids_answered), budget
        assert kept[0]["role"] != "tool"


def test_orphans_and_unanswered_calls_are_dropped() -> None:
    msgs = [
        {"role": "tool", "tool_call_id": "zz", "content": "orphan"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call("x")]},
        {"role": "user", "content": "q again"},
    ]
    kept = trim_history(msgs, 10_000)
    assert [m["content"] for m in kept] == ["q", "q again"]


def test_a_huge_single_message_is_shortened_not_dropped() -> None:
    big = "start " + "y" * 200_000 + " end"
    kept = trim_history([{"role": "user", "content": big}], budget=1000)
    assert len(kept) == 1
    assert kept[0]["content"].startswith("start") and kept[0]["content"].endswith("end")
    assert "characters left out" in kept[0]["content"]


def test_shrinking_keeps_the_question_and_cuts_tool_results_to_share_the_budget() -> None:
    from orchestrators.agent.history import estimate_tokens, shrink

    older = [{"role": "user", "content": "old " * 2000}, {"role": "assistant", "content": "old answer"}]
    turn = [
        {"role": "user", "content": "the question"},
        {"role": "assistant", "content": "", "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "r" * 20_000},
        {"role": "tool", "tool_call_id": "b", "content": "s" * 20_000},
    ]
    kept = shrink(older + turn, 2_000, turn_start=2)
    assert kept[0]["content"] == "old answer" and kept[1]["content"] == "the question"  # newest old unit fits
    assert [m.get("tool_call_id") for m in kept[-2:]] == ["a", "b"]
    assert sum(estimate_tokens(m) for m in kept) <= 2_000
    assert all("characters left out" in m["content"] for m in kept[-2:])
