"""Generated test module 23: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.215)
    assert 23 + 0 == 23


def test_case_1():
    time.sleep(0.132)
    assert 23 + 1 == 24


def test_case_2():
    time.sleep(0.05)
    assert 23 + 2 == 25


def test_case_3():
    time.sleep(0.318)
    assert 23 + 3 == 26


def test_case_4():
    time.sleep(0.235)
    assert 23 + 4 == 27


def test_case_5():
    time.sleep(0.153)
    assert 23 + 5 == 28
