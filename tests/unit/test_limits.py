"""Token buckets (berth/api/limits.py) on an injected clock."""

from __future__ import annotations

from berth.api.limits import Limits, Rate, TokenBuckets, retry_after
from berth.iam.authz import Principal


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    b = TokenBuckets(Rate(2.0, 3.0), clock)
    for _ in range(3):
        assert b.wait("k") == 0
        b.take("k")
    assert b.wait("k") == 0.5  # one token comes back every half second
    clock.t += 0.5
    assert b.wait("k") == 0
    b.take("k")
    clock.t += 100  # a quiet spell refills to the burst, no more
    for _ in range(3):
        b.take("k")
    assert b.wait("k") > 0
    assert b.wait("other") == 0


def test_rate_of() -> None:
    assert Rate.of(0) is None
    assert Rate.of(5) == Rate(5.0, 10.0)
    assert Rate.of(5, 7) == Rate(5.0, 7.0)
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def test_account_and_principal() -> None:
    clock = Clock()
    limits = Limits(Rate(1.0, 3.0), Rate(1.0, 2.0), clock)
    alice = Principal.iam_user("111122223333", "alice", "AKIA1")
    bob = Principal.iam_user("111122223333", "bob", "AKIA2")
    other = Principal.iam_user("444455556666", "carol", "AKIA3")
    assert limits.check(alice) == 0 and limits.check(alice) == 0
    assert limits.check(alice) > 0  # alice's own bucket is empty
    assert limits.check(bob) == 0  # bob's is not; the account has one left
    assert limits.check(bob) > 0  # now the account's is empty
    assert limits.check(other) == 0  # another account
    clock.t += 1.0
    assert limits.check(bob) == 0


def test_shared_table_is_one_bucket_for_two_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two Limits on one file (as two workers of a node): the burst is spent once, not once each."""
    clock = Clock()
    path = tmp_path / "run" / "rate-limits"
    one, two = Limits(None, Rate(1.0, 4.0), clock, shared=path), Limits(None, Rate(1.0, 4.0), clock, shared=path)
    alice = Principal.iam_user("111122223333", "alice", "AKIA1")
    allowed = sum(1 for i in range(8) if (one if i % 2 else two).check(alice) == 0)
    assert allowed == 4
    clock.t += 1.0
    assert one.check(alice) == 0 and two.check(alice) > 0
    clock.t = 1.0  # a clock behind what the file holds (a reboot): full buckets, not refusals
    assert all(two.check(alice) == 0 for _ in range(4))
    # many keys: an evicted slot is a full bucket again, never a wrong refusal
    for i in range(3000):
        assert one.check(Principal.iam_user("111122223333", f"u{i}", "AKIA")) == 0
