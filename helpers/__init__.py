"""Computations behind the "An Neuron" book.

Each module holds one kind of analysis; the book's pages import them and stay thin.
"""
