"""A factory for ``--model named_models:mnist_mlp_with_names`` (tests import it from this folder):
the shipped MNIST MLP carrying ``class_names``, as a user's own model may."""

from odin_ood import models

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def mnist_mlp_with_names():
    model = models.load("mnist-mlp")
    model.class_names = DIGIT_NAMES
    return model
