"""Generated test module 30: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.174)
    assert 30 + 0 == 30


def test_case_1():
    time.sleep(0.091)
    assert 30 + 1 == 31


def test_case_2():
    time.sleep(0.359)
    assert 30 + 2 == 32


def test_case_3():
    time.sleep(0.276)
    assert 30 + 3 == 33


def test_case_4():
    time.sleep(0.194)
    assert 30 + 4 == 34


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0
