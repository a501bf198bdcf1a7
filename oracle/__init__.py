"""The reference oracle: judges an allocator speaking the subject protocol against the spec."""
