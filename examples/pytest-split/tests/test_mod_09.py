"""Generated test module 09: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.297)
    assert 9 + 0 == 9


def test_case_1():
    time.sleep(0.215)
    assert 9 + 1 == 10


def test_case_2():
    time.sleep(0.132)
    assert 9 + 2 == 11


def test_case_3():
    time.sleep(0.05)
    assert 9 + 3 == 12
