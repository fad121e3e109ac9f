"""Model runtimes (llama.cpp in-process, scripted), prompts, the model catalog, tiny models."""
