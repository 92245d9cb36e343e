"""Generated test module 20: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.132)
    assert 20 + 0 == 20


def test_case_1():
    time.sleep(0.05)
    assert 20 + 1 == 21


def test_case_2():
    time.sleep(0.318)
    assert 20 + 2 == 22


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0
