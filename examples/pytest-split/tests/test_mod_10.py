"""Generated test module 10: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.091)
    assert 10 + 0 == 10


def test_case_1():
    time.sleep(0.359)
    assert 10 + 1 == 11


def test_case_2():
    time.sleep(0.276)
    assert 10 + 2 == 12


def test_case_3():
    time.sleep(0.194)
    assert 10 + 3 == 13


def test_case_4():
    time.sleep(0.112)
    assert 10 + 4 == 14


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    time.sleep(0.05 * n)
    assert n > 0


class TestGroup:
    def test_in_class(self):
        time.sleep(0.2)
        assert True
