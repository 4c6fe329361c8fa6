"""The application layer: the whole settings model (stages and dev stack included), which
function runs as which stage, and the internals of the commands (init, submit, status).

The layers below never import this one.
"""
