"""Names, argument checks, model loading, prompts and the logit-difference metric."""
