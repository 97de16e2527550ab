# Reproduces "Methods to defend adversarial images" on CIFAR-10; see README.md.
from snakemake.utils import min_version

min_version("8.0")


# config/config.yaml (paper settings) unless --configfile names another complete config: files
# given on the command line replace it instead of being merged into it, so a custom config never
# inherits the paper's attacks by accident. Missing keys take the schema's defaults.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/purification.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/seeds.smk"


rule all:
    default_target: True
    input:
        all_targets(),
