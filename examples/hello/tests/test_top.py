import unittest
from wordfreq import top


class TopTest(unittest.TestCase):
    def test_orders_by_count_then_word(self):
        self.assertEqual(top("b a b c a b", 2), [("b", 3), ("a", 2)])

    def test_ties_alphabetical(self):
        self.assertEqual(top("z y", 2), [("y", 1), ("z", 1)])
