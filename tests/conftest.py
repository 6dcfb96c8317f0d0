"""Shared test set-up: this folder is on ``sys.path`` (pytest's rootdir conftest), so test
modules in sub-folders can ``import real_clients`` (headless Chromium, glTF validator)."""
