"""Generated test module 03: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.132)
    assert 3 + 0 == 3


def test_case_1():
    time.sleep(0.05)
    assert 3 + 1 == 4


def test_case_2():
    time.sleep(0.318)
    assert 3 + 2 == 5


def test_case_3():
    time.sleep(0.235)
    assert 3 + 3 == 6


def test_case_4():
    time.sleep(0.153)
    assert 3 + 4 == 7


def test_case_5():
    time.sleep(0.071)
    assert 3 + 5 == 8


class TestGroup:
    def test_in_class(self):
        time.sleep(0.2)
        assert True
