import unittest

from textkit.slug import slugify


class SlugifyTest(unittest.TestCase):
    def test_lowercase_and_dashes(self):
        self.assertEqual(slugify("Hello World!"), "hello-world")

    def test_collapses_spaces(self):
        self.assertEqual(slugify("  Many   spaces here "), "many-spaces-here")
