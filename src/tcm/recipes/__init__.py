"""End-to-end recipes built from the library: data, training, evaluation, reporting."""
