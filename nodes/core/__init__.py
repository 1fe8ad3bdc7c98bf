"""Core pack: primitive values and small helpers that any graph can use."""

from .math import Add, Multiply
from .primitives import Bool, Float, Int, RandomSeed, String
from .text import JoinText, ShowValue

NODES = [Int, Float, String, Bool, RandomSeed, Add, Multiply, JoinText, ShowValue]
