"""The embedded demo model: a tiny Stable Diffusion 1.x trained on handwritten digits.

`nodeflow.demo.train` builds and trains it; `nodeflow.demo.digits` holds the caption
vocabulary it was trained with and a small classifier that reads its images back.
"""
