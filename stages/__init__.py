"""DVC stage entry points: each parses its arguments, reads params.yaml and calls one pipeline function."""
