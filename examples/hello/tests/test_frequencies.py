import unittest
from wordfreq import frequencies


class FrequenciesTest(unittest.TestCase):
    def test_counts(self):
        self.assertEqual(frequencies("a b a")["a"], 2)

    def test_empty(self):
        self.assertEqual(len(frequencies("")), 0)
