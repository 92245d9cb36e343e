"""Generated test module 31: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.318)
    assert 31 + 0 == 31


def test_case_1():
    time.sleep(0.235)
    assert 31 + 1 == 32


def test_case_2():
    time.sleep(0.153)
    assert 31 + 2 == 33


def test_case_3():
    time.sleep(0.071)
    assert 31 + 3 == 34


def test_case_4():
    time.sleep(0.338)
    assert 31 + 4 == 35


def test_case_5():
    time.sleep(0.256)
    assert 31 + 5 == 36


class TestGroup:
    def test_in_class(self):
        time.sleep(0.2)
        assert True
