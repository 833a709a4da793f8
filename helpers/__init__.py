"""Computations behind the "An Neuron" book, in layers that import only downwards:

- ``helpers.core``: names (``L31N892``), argument checks, model loading, prompts and the metric.
- ``helpers.toy``: the bundled model's corpus generator, its training, and its files.
- ``helpers.methods``: logit lens, layer and neuron patching, attribution, congruence, and the
  slow references the tests compare them with.
- ``helpers.scan``: one resumable pass over a corpus (documents, forward pass, store, statistics).
- ``helpers.paper``: the original study's numbers, typed.
- ``helpers.book``: what the pages need on top: page setup, prose summaries, figures, display,
  and the build.
"""
