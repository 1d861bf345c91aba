"""Benchmarks behind `emtwin bench KIND`: each prints figures and returns them as a dict."""
