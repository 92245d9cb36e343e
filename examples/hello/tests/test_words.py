import unittest
from wordfreq import words


class WordsTest(unittest.TestCase):
    def test_lowercases(self):
        self.assertEqual(words("Hello WORLD"), ["hello", "world"])

    def test_keeps_apostrophes(self):
        self.assertEqual(words("don't stop"), ["don't", "stop"])
