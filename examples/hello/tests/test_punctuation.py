import unittest
from wordfreq import words


class PunctuationTest(unittest.TestCase):
    def test_strips_punctuation(self):
        self.assertEqual(words("end. start, middle!"), ["end", "start", "middle"])

    def test_digits_are_not_words(self):
        self.assertEqual(words("route 66"), ["route"])
