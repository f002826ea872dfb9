"""The SMS-code try policy (SPEC §5) without a database: tries per code, killing a code, total tries."""

from __future__ import annotations

from esign_gateway.domain.otp import Tries


def wrong(tries: Tries, n: int) -> Tries:
    for _ in range(n):
        tries = tries.wrong()
    return tries


def test_the_third_wrong_try_kills_the_code_so_a_fourth_is_refused() -> None:
    two = wrong(Tries(), 2)
    assert not two.code_dead
    assert two.attempts_left == 1
    three = two.wrong()
    assert three.code_dead
    assert three.left_on_code == 0
    assert three.attempts_left == 0  # a fourth try on this code is not offered: a new code is needed
    assert not three.blocked


def test_each_wrong_try_counts_once_on_the_code_and_once_in_all() -> None:
    one = Tries(on_code=1, total=4).wrong()
    assert one == Tries(on_code=2, total=5)
    assert one.attempts_left == 1
    assert one.left_total == 5


def test_the_tenth_wrong_try_in_all_blocks_the_signer() -> None:
    tries = Tries()
    for n in range(1, 11):
        tries = tries.wrong() if not tries.code_dead else tries.new_code().wrong()
        assert tries.total == n
        assert tries.blocked is (n == 10)
    assert tries.attempts_left == 0
    assert tries.left_total == 0


def test_nine_wrong_tries_over_three_codes_leave_one_try_on_a_new_code() -> None:
    tries = Tries()
    for _ in range(3):
        tries = wrong(tries.new_code(), 3)
        assert tries.code_dead
    assert tries.total == 9
    assert not tries.blocked
    fresh = tries.new_code()
    assert fresh.left_on_code == 3
    assert fresh.attempts_left == 1  # the total caps what a new code offers


def test_a_new_code_resets_the_tries_per_code_but_not_the_total() -> None:
    dead = wrong(Tries(), 3)
    fresh = dead.new_code()
    assert fresh == Tries(on_code=0, total=3)
    assert not fresh.code_dead
    assert fresh.attempts_left == 3
    assert fresh.left_total == 7

