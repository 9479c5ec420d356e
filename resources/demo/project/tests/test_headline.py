import unittest


class HeadlineTest(unittest.TestCase):
    def test_first_five_words(self):
        from textkit.headline import headline_slug

        self.assertEqual(
            headline_slug("Ten Tips For Writing Better Python Code"), "ten-tips-for-writing-better"
        )
