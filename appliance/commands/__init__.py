"""One module per `facewatch` sub-command: add_arguments(parser) and run(args) -> exit code.

Modules import their heavy dependencies inside run(), so building the parser stays cheap.
"""
