"""Generated test module 25: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.153)
    assert 25 + 0 == 25


def test_case_1():
    time.sleep(0.071)
    assert 25 + 1 == 26


def test_case_2():
    time.sleep(0.338)
    assert 25 + 2 == 27


def test_case_3():
    time.sleep(0.256)
    assert 25 + 3 == 28


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0
