"""Generated test module 26: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.297)
    assert 26 + 0 == 26


def test_case_1():
    time.sleep(0.215)
    assert 26 + 1 == 27


def test_case_2():
    time.sleep(0.132)
    assert 26 + 2 == 28


def test_case_3():
    time.sleep(0.05)
    assert 26 + 3 == 29


def test_case_4():
    time.sleep(0.318)
    assert 26 + 4 == 30
