"""Generated test module 00: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.15)
    assert 0 + 0 == 0


def test_case_1():
    time.sleep(0.953)
    assert 0 + 1 == 1


def test_case_2():
    time.sleep(0.706)
    assert 0 + 2 == 2


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0
