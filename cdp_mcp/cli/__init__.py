"""The command line: commands, the live board, the headless runner and its events, demo data."""
