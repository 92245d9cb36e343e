"""Generated test module 19: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.338)
    assert 19 + 0 == 19


def test_case_1():
    time.sleep(0.256)
    assert 19 + 1 == 20


def test_case_2():
    time.sleep(0.174)
    assert 19 + 2 == 21


def test_case_3():
    time.sleep(0.091)
    assert 19 + 3 == 22


def test_case_4():
    time.sleep(0.359)
    assert 19 + 4 == 23


def test_case_5():
    time.sleep(0.276)
    assert 19 + 5 == 24
