"""Generated test module 18: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.194)
    assert 18 + 0 == 18


def test_case_1():
    time.sleep(0.112)
    assert 18 + 1 == 19


def test_case_2():
    time.sleep(0.379)
    assert 18 + 2 == 20


def test_case_3():
    time.sleep(0.297)
    assert 18 + 3 == 21


def test_case_4():
    time.sleep(0.215)
    assert 18 + 4 == 22
