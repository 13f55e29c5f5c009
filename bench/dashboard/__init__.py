"""Dashboard benchmark: seed a large platform (``seed``), time every page and screenshot it (``__main__``)."""
