"""Generated test module 06: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.215)
    assert 6 + 0 == 6


def test_case_1():
    time.sleep(0.132)
    assert 6 + 1 == 7


def test_case_2():
    time.sleep(0.05)
    assert 6 + 2 == 8


def test_case_3():
    time.sleep(0.318)
    assert 6 + 3 == 9


def test_case_4():
    time.sleep(0.235)
    assert 6 + 4 == 10
