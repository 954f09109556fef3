"""Package data that lives outside the package folder: everything else is in pyproject.toml.

The repository keeps the demo model and the sample data in its top-level `models/` and `data/`
folders (tools/ regenerates them there; a clone's runs go beside the demo in `models/`). A wheel
needs them inside the package, so they are mapped to `sdstudio/_shipped/models` and
`sdstudio/_shipped/data`; `sdstudio.core.paths.shipped_root` finds either layout. pyproject.toml
alone cannot add mapped packages to the found ones, hence this file.
"""

from setuptools import find_packages, setup

SHIPPED = {"sdstudio._shipped.models": "models", "sdstudio._shipped.data": "data"}

setup(
    packages=find_packages(include=["sdstudio", "sdstudio.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    # only the demo from models/ (a clone's own runs live there too), and all of data/
    package_data={"sdstudio._shipped.models": ["demo/**/*"], "sdstudio._shipped.data": ["**/*"]},
)
