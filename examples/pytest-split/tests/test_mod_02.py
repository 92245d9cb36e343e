"""Generated test module 02: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.338)
    assert 2 + 0 == 2


def test_case_1():
    time.sleep(0.256)
    assert 2 + 1 == 3


def test_case_2():
    time.sleep(0.174)
    assert 2 + 2 == 4


def test_case_3():
    time.sleep(0.091)
    assert 2 + 3 == 5


def test_case_4():
    time.sleep(0.359)
    assert 2 + 4 == 6
