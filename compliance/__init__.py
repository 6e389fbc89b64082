"""Autobahn|Testsuite drivers for wsline (see compliance/README.md)."""
