"""The analyses: logit lens, the patching family, congruence, and their slow references."""
