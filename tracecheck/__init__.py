"""The kernel trace checker: replays Linux kmem/vmalloc trace events against the specification."""
