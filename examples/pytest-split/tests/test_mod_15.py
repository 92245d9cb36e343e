"""Generated test module 15: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.112)
    assert 15 + 0 == 15


def test_case_1():
    time.sleep(0.379)
    assert 15 + 1 == 16


def test_case_2():
    time.sleep(0.297)
    assert 15 + 2 == 17


def test_case_3():
    time.sleep(0.215)
    assert 15 + 3 == 18


def test_case_4():
    time.sleep(0.132)
    assert 15 + 4 == 19


def test_case_5():
    time.sleep(0.05)
    assert 15 + 5 == 20


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0
