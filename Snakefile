# Reproduces "Methods to defend adversarial images" on CIFAR-10; see README.md.
from snakemake.utils import min_version

min_version("8.0")


# config/config.yaml (paper settings) unless --configfile names another complete config: files
# given on the command line replace it instead of being merged into it, so a custom config never
# inherits the paper's attacks by accident. Missing keys take the schema's defaults.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# `container` (config): the image built from ./Dockerfile, which `snakemake --containerize` generates; with it,
# `--sdm conda apptainer` runs each job in its conda environment inside the image (README, "A container").
# Declared before the rules (a rule takes the image declared when it is defined); the schema checks the value.
if config.get("container"):

    containerized: config["container"]


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/purification.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/corruptions.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/seeds.smk"


rule all:
    default_target: True
    input:
        all_targets(),
