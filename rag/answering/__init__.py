"""Answering: the prompt, the streamed answer, and the checks that keep it to its sources."""
