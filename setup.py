"""The build's one rule that pyproject.toml cannot say: of the package ``sessions``, the wheel takes
only the empty ``__init__.py``, not the platform's Django modules beside ``sessions/runtime``."""

from setuptools import setup
from setuptools.command.build_py import build_py


class ClientOnly(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "sessions":
            return [(pkg, module, path) for pkg, module, path in modules if module == "__init__"]
        return modules


setup(cmdclass={"build_py": ClientOnly})
