"""tfnas: hardware-aware neural architecture search for Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

setup(
    name="tfnas",
    version="0.1.0",
    description="Hardware-aware NAS (Single-Path superkernel, mixed ops, latency models) for "
                "Keras 3 / TensorFlow, with TFLite export and on-device benchmarking",
    packages=find_packages(include=["tfnas", "tfnas.*"]),
    package_data={"tfnas": ["latency/tables/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.0",
        "keras==3.15.1",
        # tensorflow-model-optimization (extra qat) needs absl-py ~= 1.2; pinning it here keeps
        # the base and the qat extra installable together.
        "absl-py==1.4.0",
        "tensorflow-datasets==4.9.10",
        "ai-edge-litert==2.3.0",
        "scikit-learn==1.9.1",
        "matplotlib==3.11.2",
        "tqdm==4.70.1",
        "tensorboard==2.21.0",  # tf.summary needs it; TensorFlow 2.21 no longer pulls it in
    ],
    extras_require={
        "qat": ["tensorflow-model-optimization==0.8.1", "tf-keras==2.21.0"],
        # the tests execute the colab/ notebooks in a real kernel
        "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"],
    },
)
