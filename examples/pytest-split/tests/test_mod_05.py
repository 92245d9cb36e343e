"""Generated test module 05: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.071)
    assert 5 + 0 == 5


def test_case_1():
    time.sleep(0.338)
    assert 5 + 1 == 6


def test_case_2():
    time.sleep(0.256)
    assert 5 + 2 == 7


def test_case_3():
    time.sleep(0.174)
    assert 5 + 3 == 8


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0
