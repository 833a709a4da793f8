"""One resumable pass over a corpus: documents, the forward pass, the store, statistics."""
