# Only for editable installs with setuptools < 64 (the newest on Python 3.6, JetPack 4.6), which have
# no PEP 660 hook; everything is declared in setup.cfg.
from setuptools import setup

setup()
