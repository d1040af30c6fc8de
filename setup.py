"""Only what pyproject.toml cannot say: the package list. pyproject's `packages.find` cannot add a package that
lives outside the package tree, and the spec library (specs/ at the repository root) installs as `archc.specs`.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["archc", "archc.*"]) + ["archc.specs"],
    package_dir={"archc.specs": "specs"},
)
