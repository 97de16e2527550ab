# The pipeline's software in one image, for `snakemake --sdm conda apptainer` (and `--sdm apptainer`) on a
# cluster without a Python setup. Everything from the FROM line to the `conda clean` line is the output of
#   snakemake --containerize --configfile config/smoke.yaml
# with the base image pinned to a release (the generator writes `latest`); tests/test_container.py regenerates
# it and fails where this file and envs/*.yaml have drifted apart. Build, push, then set `container` in the
# config (README, "A container"):
#   docker build -t <registry>/advdefense:0.1.0 . && docker push <registry>/advdefense:0.1.0
FROM condaforge/miniforge3:25.3.0-1
LABEL io.github.snakemake.containerized="true"
LABEL io.github.snakemake.conda_env_hash="6b8dd78296c8a2c8d1087a7678956acd46b44f8cc38a7d41ce07cf73e950f8a6"
# Conda environment:
#   source: envs/pipeline.yaml
#   prefix: /conda-envs/9779245c870c6639cf1bacea457e108d
#   # Conda environment for every rule (used with `snakemake --sdm conda`).
#   # The project's package is imported from the checkout: common.smk puts src/ on sys.path for the DAG build, and
#   # every script imports workflow/scripts/_checkout.py first, which does the same inside the job.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - h5py=3.12
#     - numpy=2.1
#     - pandas=2.2
#     - pyyaml=6.0
#     - jsonschema=4.23
#     - matplotlib=3.9
#     - scikit-image=0.24  # corruptions (CIFAR-10-C)
#     - pip:
#         - torch==2.9.1
#         - torchvision==0.24.1
#         - foolbox==3.3.4
#         - pyautoattack==0.2.0
#         # classifier.source: robustbench (its 1.1.1 imports pkg_resources, gone from setuptools 81)
#         - robustbench==1.1.1
#         - setuptools<81
#         # corruptions: CIFAR-10-C's frost pictures and motion-blur port (imports pkg_resources too)
#         - imagecorruptions==1.1.2
RUN mkdir -p /conda-envs/9779245c870c6639cf1bacea457e108d
COPY envs/pipeline.yaml /conda-envs/9779245c870c6639cf1bacea457e108d/environment.yaml
# Conda environment:
#   source: envs/report.yaml
#   prefix: /conda-envs/9b48fed8dccceb66fae2f860326ac56c
#   # Conda environment of the figure rules (used with `snakemake --sdm conda`).
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - h5py=3.12
#     - numpy=2.1
#     - pandas=2.2
#     - matplotlib=3.9
#     - pyyaml=6.0
#     - jsonschema=4.23
#     - pip:
#         - torch==2.9.1
RUN mkdir -p /conda-envs/9b48fed8dccceb66fae2f860326ac56c
COPY envs/report.yaml /conda-envs/9b48fed8dccceb66fae2f860326ac56c/environment.yaml

RUN conda env create --prefix /conda-envs/9779245c870c6639cf1bacea457e108d --file /conda-envs/9779245c870c6639cf1bacea457e108d/environment.yaml && \
    conda env create --prefix /conda-envs/9b48fed8dccceb66fae2f860326ac56c --file /conda-envs/9b48fed8dccceb66fae2f860326ac56c/environment.yaml && \
    conda clean --all -y

# not generated: the pipeline environment first on PATH, so that `--sdm apptainer` without conda runs every job
# with it too (with `--sdm conda apptainer`, Snakemake activates each rule's environment itself)
ENV PATH=/conda-envs/9779245c870c6639cf1bacea457e108d/bin:$PATH
