import unittest

from textkit.stats import load_stop_words, word_count


class WordCountTest(unittest.TestCase):
    def test_plain(self):
        self.assertEqual(word_count("the cat and the hat"), 5)

    def test_skip_stop_words(self):
        stop = load_stop_words()
        self.assertIn("the", stop)
        text = "the cat and the hat"
        expected = len([w for w in text.split() if w not in stop])
        self.assertEqual(word_count(text, skip_stop_words=True), expected)
