"""Frame parsing and client helpers without servers: every bad input becomes a clear error frame."""

from __future__ import annotations

import io
import json

import pytest
from agentswarm import protocol as p
from agentswarm.client import ProgressBar, event_fraction


@pytest.mark.parametrize(
    ("message", "code", "fragment"),
    [
        ("nope", "bad_json", "not valid JSON"),
        ("3", "bad_json", "JSON object"),
        ('{"type": "fly"}', "unknown_type", "'fly'"),
        ('{"type": "submit", "tasks": [{"payload": {}, "extra": 1}]}', "invalid_frame", "extra"),
        ('{"type": "submit", "tasks": [{"task_id": "../etc", "payload": {}}]}', "invalid_frame", "task_id"),
        ('{"type": "subscribe"}', "invalid_frame", "task_id"),
        ('{"type": "auth"}', "invalid_frame", "token"),
        (
            '{"type": "submit", "priority": "urgent", "tasks": [{}]}',
            "invalid_frame",
            "priority: Value error, unknown priority 'urgent': use one of high, normal, low",
        ),
        (
            '{"type": "submit", "tasks": [{"priority": "HIGH"}]}',
            "invalid_frame",
            "tasks.0.priority: Value error, unknown priority 'HIGH': use one of high, normal, low",
        ),
        ('{"type": "cancel", "task_ids": []}', "invalid_frame", "task_ids"),
        ('{"type": "cancel", "task_ids": ["../x"]}', "invalid_frame", "task_ids"),
        ("[" * 100_000, "bad_json", "JSON"),
    ],
)
def test_bad_client_frames_become_error_frames(message: str, code: str, fragment: str) -> None:
    frame = p.parse_client_frame(message)
    assert isinstance(frame, p.ErrorFrame)
    assert frame.code == code
    assert fragment in frame.message


def test_error_frames_echo_the_ref_and_limits_apply() -> None:
    frame = p.parse_client_frame('{"type": "subscribe", "ref": "r-7"}')
    assert isinstance(frame, p.ErrorFrame) and frame.ref == "r-7"
    big = json.dumps({"type": "stats", "ref": "x" * 200})
    too_large = p.parse_client_frame(big, max_bytes=100)
    assert isinstance(too_large, p.ErrorFrame) and too_large.code == "too_large"
    assert str(len(big)) in too_large.message
    many = {"type": "submit", "tasks": [{"payload": {}}] * (p.MAX_TASKS_PER_SUBMIT + 1)}
    limited = p.parse_client_frame(json.dumps(many))
    assert isinstance(limited, p.ErrorFrame) and limited.code == "invalid_frame"


def test_good_frames_round_trip() -> None:
    frame = p.parse_client_frame('{"type": "subscribe", "task_id": "t-1", "after": "1700000000000-3"}')
    assert isinstance(frame, p.SubscribeFrame) and frame.after == "1700000000000-3"
    sub = p.parse_client_frame('{"type": "submit", "tasks": [{"payload": {"steps": 2}}]}')
    assert isinstance(sub, p.SubmitFrame) and sub.tasks[0].task_id is None
    assert (sub.priority, sub.tasks[0].priority) == ("normal", None)  # the default; a task inherits it
    mixed = p.parse_client_frame('{"type": "submit", "priority": "low", "tasks": [{}, {"priority": "high"}]}')
    assert isinstance(mixed, p.SubmitFrame)
    assert (mixed.priority, [t.priority for t in mixed.tasks]) == ("low", [None, "high"])
    event = p.EventFrame(task_id="t", event_id="5", data={"type": "progress"})
    assert p.parse_server_frame(event.dump()) == event
    cancel = p.parse_client_frame('{"type": "cancel", "ref": "c", "task_ids": ["a", "b"]}')
    assert isinstance(cancel, p.CancelFrame) and cancel.task_ids == ["a", "b"]
    reply = p.CancelledFrame(ref="c", outcomes={"a": "cancelled", "b": "not_found"})
    assert p.parse_server_frame(reply.dump()) == reply
    ended = p.ResultFrame(task_id="a", status="cancelled")
    assert p.parse_server_frame(ended.dump()) == ended
    with pytest.raises(ValueError, match="unexpected frame"):
        p.parse_server_frame('{"type": "mystery"}')


def test_progress_bar_counts_steps_and_results() -> None:
    assert event_fraction({"step": 2, "of": 4}) == 0.5
    assert event_fraction({"progress": 1.5}) == 1.0
    assert event_fraction({"type": "started"}) is None
    out = io.StringIO()
    bar = ProgressBar(["a", "b"], stream=out)
    bar.on_event(p.EventFrame(task_id="a", event_id="1", data={"step": 1, "of": 2}))
    bar.on_result(p.ResultFrame(task_id="b", status="done"))
    bar.close()
    last = out.getvalue().strip().splitlines()[-1]
    assert "75.0%" in last and "1/2 done" in last and "1 events" in last
