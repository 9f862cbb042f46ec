"""Text processing: language ID, normalisation, tokenisation and span <-> BIO conversion."""
