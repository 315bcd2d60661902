"""l2guard: the command line (`l2guard explain`, and the entry points of the webhook and the speaker).

The decisions live in `l2core`; this package only reads input, calls the core and renders its answers.
"""
