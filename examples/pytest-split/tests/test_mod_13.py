"""Generated test module 13: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.174)
    assert 13 + 0 == 13


def test_case_1():
    time.sleep(0.091)
    assert 13 + 1 == 14


def test_case_2():
    time.sleep(0.359)
    assert 13 + 2 == 15


def test_case_3():
    time.sleep(0.276)
    assert 13 + 3 == 16
