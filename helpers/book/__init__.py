"""What the pages need on top of the methods: setup, prose summaries, figures, display, the build."""
