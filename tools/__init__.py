"""Developer tools that are not part of the model (the kernel capture tool)."""
