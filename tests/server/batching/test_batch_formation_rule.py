"""The rule that turns queued jobs into batches, checked with an injected clock (no timing)."""

from __future__ import annotations

import threading

import pytest

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models.batching import BatchPolicy, Job, JobQueue

from mf_polling import eventually_sync


def job(enqueued: float) -> Job:
    return Job(inputs={}, future=None, deadline=None, enqueued=enqueued)


def test_adaptive_policy_dispatches_a_lone_request_at_once() -> None:
    policy = BatchPolicy(batch_size=32, max_delay_s=0.005, adaptive=True)
    assert policy.decide(pending=1, oldest_enqueued=10.0, now=10.0) == 0.0


def test_fixed_policy_waits_out_the_delay_for_a_partial_batch() -> None:
    policy = BatchPolicy(batch_size=32, max_delay_s=0.005, adaptive=False)
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.002) == pytest.approx(0.003)
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.005) == 0.0
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=11.0) == 0.0


def test_a_full_batch_goes_at_once_in_both_modes() -> None:
    for adaptive in (True, False):
        policy = BatchPolicy(batch_size=4, max_delay_s=10.0, adaptive=adaptive)
        assert policy.decide(pending=4, oldest_enqueued=0.0, now=0.0) == 0.0


def test_an_empty_queue_waits_for_a_put() -> None:
    policy = BatchPolicy(batch_size=4, max_delay_s=0.005, adaptive=True)
    assert policy.decide(pending=0, oldest_enqueued=0.0, now=0.0) == -1.0


def test_queue_hands_out_at_most_batch_size_jobs_in_arrival_order() -> None:
    queue = JobQueue(capacity=100, policy=BatchPolicy(batch_size=3, max_delay_s=0.0, adaptive=True))
    jobs = [job(float(i)) for i in range(5)]
    for item in jobs:
        queue.put(item)
    assert queue.try_take(now=10.0) == jobs[:3]
    assert queue.try_take(now=10.0) == jobs[3:]
    assert queue.try_take(now=10.0) == -1.0


def test_fixed_queue_releases_the_partial_batch_exactly_when_the_oldest_job_is_due() -> None:
    queue = JobQueue(capacity=100, policy=BatchPolicy(batch_size=8, max_delay_s=0.1, adaptive=False))
    first, second = job(5.0), job(5.05)
    queue.put(first)
    queue.put(second)
    assert queue.try_take(now=5.04) == pytest.approx(0.06)
    assert queue.try_take(now=5.0999) == pytest.approx(0.0001)
    assert queue.try_take(now=5.1) == [first, second]


def test_a_full_queue_refuses_at_once_with_queue_full() -> None:
    queue = JobQueue(capacity=2, policy=BatchPolicy(batch_size=1, max_delay_s=0.0, adaptive=True))
    queue.put(job(0.0))
    queue.put(job(0.0))
    with pytest.raises(ModelFleetError) as caught:
        queue.put(job(0.0))
    assert caught.value.reason is Reason.QUEUE_FULL
    assert len(queue) == 2


def test_closing_returns_the_waiting_jobs_and_releases_blocked_workers() -> None:
    queue = JobQueue(capacity=10, policy=BatchPolicy(batch_size=1, max_delay_s=0.0, adaptive=True))
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(queue.take(lambda: False)))
    worker.start()
    left_behind = job(0.0)
    # the worker is blocked on an empty queue; a put wakes it, then close releases the next take
    queue.put(left_behind)
    worker.join(timeout=10)
    assert results == [[left_behind]]
    queue.put(job(1.0))
    assert len(queue.close()) == 1
    assert queue.take(lambda: False) is None


def test_adaptive_policy_holds_a_partial_batch_while_another_worker_is_busy() -> None:
    """A busy worker is back within a forward pass: its queue grows into one batch, not two halves."""
    policy = BatchPolicy(batch_size=32, max_delay_s=0.005, adaptive=True)
    assert policy.overflow == 16
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.001, busy_workers=1) == pytest.approx(0.004)
    assert policy.decide(pending=15, oldest_enqueued=10.0, now=10.001, busy_workers=1) == pytest.approx(0.004)


def test_adaptive_hold_ends_at_half_a_batch_or_at_the_max_delay() -> None:
    policy = BatchPolicy(batch_size=32, max_delay_s=0.005, adaptive=True)
    assert policy.decide(pending=16, oldest_enqueued=10.0, now=10.0, busy_workers=1) == 0.0
    assert policy.decide(pending=1, oldest_enqueued=10.0, now=10.005, busy_workers=1) == 0.0
    assert policy.decide(pending=1, oldest_enqueued=10.0, now=10.0, busy_workers=0) == 0.0


def test_small_batch_sizes_never_hold_below_two() -> None:
    assert BatchPolicy(batch_size=1, max_delay_s=1.0, adaptive=True).decide(1, 0.0, 0.0, busy_workers=3) == 0.0
    assert BatchPolicy(batch_size=3, max_delay_s=1.0, adaptive=True).overflow == 2


def test_queue_counts_busy_workers_from_take_to_finished() -> None:
    """The second free worker waits for the first one's return instead of splitting the queue."""
    queue = JobQueue(capacity=100, policy=BatchPolicy(batch_size=8, max_delay_s=0.1, adaptive=True))
    first = job(1.0)
    queue.put(first)
    assert queue.try_take(now=1.0) == [first]
    assert queue.busy_workers == 1
    arrivals = [job(1.01), job(1.02)]
    for item in arrivals:
        queue.put(item)
    assert queue.try_take(now=1.02) == pytest.approx(0.09)  # held: the busy worker takes them
    queue.finished()
    assert queue.busy_workers == 0
    assert queue.try_take(now=1.03) == arrivals  # the returning worker takes both as one batch
    more = [job(1.04 + i / 100) for i in range(4)]
    for item in more:
        queue.put(item)
    assert queue.try_take(now=1.05) == more  # half a batch waiting: a second worker joins at once
    assert queue.busy_workers == 2


def test_a_held_worker_is_released_when_the_busy_one_leaves() -> None:
    """A stopped worker's finished(leaving=True) wakes the one holding back for it (no max-delay wait)."""
    clock_now = [0.0]
    queue = JobQueue(
        capacity=10, policy=BatchPolicy(batch_size=8, max_delay_s=3600.0, adaptive=True), clock=lambda: clock_now[0]
    )
    queue.put(job(0.0))
    assert isinstance(queue.try_take(now=0.0), list)  # the "leaving" worker is busy with it
    waiting = job(0.0)
    queue.put(waiting)
    results: list[object] = []
    holder = threading.Thread(target=lambda: results.append(queue.take(lambda: False)))
    holder.start()
    eventually_sync(lambda: queue.waiting_workers == 1, timeout=10, what="the holder to block in take()")
    # the holder is blocked (an hour's max delay); only the leaving worker's finished() can release it
    queue.finished(leaving=True)
    holder.join(timeout=10)
    assert results == [[waiting]]


def test_a_free_worker_holds_back_while_more_calls_of_the_version_are_expected() -> None:
    """In-flight calls not yet queued (inside grpc, or just answered and coming back) grow the batch."""
    policy = BatchPolicy(batch_size=32, max_delay_s=0.005, adaptive=True)
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.001, coming=5) == pytest.approx(0.004)
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.005, coming=5) == 0.0  # never beyond the delay
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.001, coming=0) == 0.0  # nothing else coming
    assert policy.decide(pending=16, oldest_enqueued=10.0, now=10.0, coming=20) == 0.0  # half a batch: go
    assert policy.decide(pending=32, oldest_enqueued=10.0, now=10.0, coming=20) == 0.0
    fixed = BatchPolicy(batch_size=32, max_delay_s=0.005, adaptive=False)
    assert fixed.decide(pending=3, oldest_enqueued=10.0, now=10.001, coming=0) == pytest.approx(0.004)


def test_a_lone_call_never_waits_and_calls_seen_in_flight_recently_are_waited_for() -> None:
    now = [50.0]
    queue = JobQueue(
        capacity=100, policy=BatchPolicy(batch_size=8, max_delay_s=0.005, adaptive=True), clock=lambda: now[0]
    )
    calls = queue.in_flight
    calls.enter()  # the registry counts a call in before it queues it
    lone = job(50.0)
    queue.put(lone)
    assert queue.try_take(now=50.0) == [lone]  # c=1: taken at once
    queue.finished()
    calls.leave()
    for _ in range(3):  # three calls in flight together ...
        calls.enter()
    for _ in range(3):  # ... answered, so their clients send the next three
        calls.leave()
    calls.enter()
    first = job(50.001)
    queue.put(first)
    assert queue.try_take(now=50.001) == pytest.approx(0.005)  # two more expected: hold back
    calls.enter()
    calls.enter()
    rest = [job(50.002), job(50.002)]
    queue.put_many(rest)
    assert queue.try_take(now=50.002) == [first, *rest]  # all three back: one batch, at once
    queue.finished()
    for _ in range(3):
        calls.leave()
    now[0] = 50.1  # the peak is forgotten after one to two quiet windows: a lone call again
    calls.enter()
    later = job(50.1)
    queue.put(later)
    assert queue.try_take(now=50.1) == [later]


def test_the_call_that_completes_the_expected_batch_wakes_the_worker_holding_back() -> None:
    now = [0.0]
    queue = JobQueue(
        capacity=10, policy=BatchPolicy(batch_size=8, max_delay_s=3600.0, adaptive=True), clock=lambda: now[0]
    )
    queue.in_flight.enter()
    queue.in_flight.enter()
    queue.in_flight.leave()  # one of two in flight left: it is expected back
    first = job(0.0)
    queue.put(first)
    results: list[object] = []
    holder = threading.Thread(target=lambda: results.append(queue.take(lambda: False)))
    holder.start()
    eventually_sync(lambda: queue.waiting_workers == 1, timeout=10, what="the holder to block in take()")
    # held for an hour's max delay; only the second call's put can release it
    queue.in_flight.enter()
    second = job(0.0)
    queue.put(second)
    holder.join(timeout=10)
    assert results == [[first, second]]
