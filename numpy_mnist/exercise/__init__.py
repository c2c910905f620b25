"""Derive it yourself: exercises that check a learner's own backward functions, then train with them.

=====================================  ===============================================================
:mod:`~numpy_mnist.exercise.functions`  the nine exercises, in the book's order, a table of what each
                                        is and how it is checked; ``exercise new``'s starter file
:mod:`~numpy_mnist.exercise.sandbox`    the learner's file run in a child process, with a time limit
:mod:`~numpy_mnist.exercise.checker`    ``exercise check``: hypothesis inputs, reference, finite
                                        differences, PyTorch; one row per function
:mod:`~numpy_mnist.exercise.hints`      what a wrong answer is, read off the comparison
:mod:`~numpy_mnist.exercise.training`   ``check --train``: simple_net with the learner's functions
=====================================  ===============================================================
"""

from numpy_mnist.exercise.functions import EXERCISE_NAMES, EXERCISES, STARTER_NAME, Exercise, starter_source

__all__ = ["EXERCISES", "EXERCISE_NAMES", "Exercise", "STARTER_NAME", "starter_source"]
