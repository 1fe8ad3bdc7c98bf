"""The embedded demo model: a tiny Stable Diffusion 1.x trained on handwritten digits.

`tools.demo.train` builds and trains it; `tools.demo.digits` holds the caption
vocabulary it was trained with and a small classifier that reads its images back.
"""
