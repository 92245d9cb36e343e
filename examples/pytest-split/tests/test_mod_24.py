"""Generated test module 24: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(1.076)
    assert 24 + 0 == 24


def test_case_1():
    time.sleep(0.829)
    assert 24 + 1 == 25


def test_case_2():
    time.sleep(0.582)
    assert 24 + 2 == 26


class TestGroup:
    def test_in_class(self):
        time.sleep(0.2)
        assert True
