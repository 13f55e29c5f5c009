"""The service layer: one module per stage, each turning an event into domain calls
and port calls (Architecture Patterns with Python, chapter 4). Handlers in
``services/*/app.py`` only parse, call one function here, and return."""
