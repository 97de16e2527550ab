# Reproduces "Methods to defend adversarial images" on CIFAR-10; see README.md.
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/flow.smk"


rule all:
    input:
        all_targets(),
    default_target: True
