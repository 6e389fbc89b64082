"""Autobahn|Testsuite for wsline: install.sh installs wstest, runner runs it, summary reads its verdicts.

See compliance/README.md.
"""
