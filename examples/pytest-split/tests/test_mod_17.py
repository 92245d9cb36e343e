"""Generated test module 17: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.05)
    assert 17 + 0 == 17


def test_case_1():
    time.sleep(0.318)
    assert 17 + 1 == 18


def test_case_2():
    time.sleep(0.235)
    assert 17 + 2 == 19


def test_case_3():
    time.sleep(0.153)
    assert 17 + 3 == 20


class TestGroup:
    def test_in_class(self):
        time.sleep(0.2)
        assert True
