"""Security tests: each pins one hole of issue 8 against the real server in-process."""
