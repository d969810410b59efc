from setuptools import find_packages, setup

setup(
    name="dele",
    version="0.1.0",
    description=(
        "Dynamic Ensemble of Low-fidelity Experts: architecture-performance "
        "predictors and predictor-based search for neural architecture search"
    ),
    packages=find_packages(include=["dele", "dele.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "numpy>=1.23",
        "scipy>=1.9",
        "pyyaml>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["dele=dele.cli:main"]},
)
