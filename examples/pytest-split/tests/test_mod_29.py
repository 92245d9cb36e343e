"""Generated test module 29: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.379)
    assert 29 + 0 == 29


def test_case_1():
    time.sleep(0.297)
    assert 29 + 1 == 30


def test_case_2():
    time.sleep(0.215)
    assert 29 + 2 == 31


def test_case_3():
    time.sleep(0.132)
    assert 29 + 3 == 32
