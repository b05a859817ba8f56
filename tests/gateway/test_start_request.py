"""A START_TASK is checked against the protocol's limits and the device's frame size before
it is sent (PROTOCOL.md section 11): the message gives the sizes and the limit."""

from __future__ import annotations

from gateway.runtime.start_request import start_request_problem

TASK = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f/0/0"


def test_a_start_that_fits_passes() -> None:
    assert start_request_problem(TASK, "echo", ("hello",), (("A", "b"),), 512) is None


def test_a_start_larger_than_the_frame_names_sizes_and_limit() -> None:
    problem = start_request_problem(TASK, "echo", ("x" * 200,) * 3, (), 512)
    assert problem is not None
    assert "3 argument(s), 600 bytes" in problem
    assert "at most 512 bytes" in problem
    assert start_request_problem(TASK, "echo", ("x" * 200,) * 3, (), 4096) is None


def test_protocol_field_limits() -> None:
    huge = start_request_problem(TASK, "echo", ("x" * 100_000,), (), 4096)
    assert huge is not None and "argument 0 is 100000 bytes" in huge
    many = start_request_problem(TASK, "echo", ("a",) * 33, (), None)
    assert many is not None and "at most 32 arguments" in many
    env = start_request_problem(TASK, "echo", (), (("BIG", "v" * 300),), None)
    assert env is not None and "300-byte value" in env
    assert start_request_problem(TASK, "echo", (), (("K", "v"),) * 33, None) is not None
