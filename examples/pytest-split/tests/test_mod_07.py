"""Generated test module 07: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.359)
    assert 7 + 0 == 7


def test_case_1():
    time.sleep(0.276)
    assert 7 + 1 == 8


def test_case_2():
    time.sleep(0.194)
    assert 7 + 2 == 9


def test_case_3():
    time.sleep(0.112)
    assert 7 + 3 == 10


def test_case_4():
    time.sleep(0.379)
    assert 7 + 4 == 11


def test_case_5():
    time.sleep(0.297)
    assert 7 + 5 == 12
