"""RS-RAG: a FAISS knowledge store that grounds answers in retrieved, cited facts."""
