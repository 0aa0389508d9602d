# annodistill: knowledge distillation in automated annotation.
# Rules are wiring (workflow/rules/*.smk); the science is the package workflow/annodistill;
# the study is config/config.yaml (or --configfile config/paper.yaml); the machine is a profile.
from snakemake.utils import min_version

min_version("9.16.3")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/students.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/hpc.smk"


rule all:
    default_target: True
    input:
        all_targets(),
