# HPC wiring: model pre-fetch on the login node, offline jobs, per-task targets, localrules.
# Include last (after every stage), so the per-task targets see every stage's targets.
# Resources live in workflow/profiles/default/config.yaml, the machine in slurm/config.yaml.
import json

# Inside a Slurm job (this file is evaluated again there) the Hugging Face hub is never contacted:
# models come from the cache filled by `snakemake --cores 1 prefetch_models` on the login node.
# An explicit HF_HUB_OFFLINE=0 exported at submission time wins.
if "SLURM_JOB_ID" in os.environ:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


rule prefetch_models:
    # named target, run on the login node: hub models of the configured students and teachers
    output:
        "resources/models/prefetch.json",
    log:
        "logs/prefetch_models.log",
    conda:
        "../../envs/students.yaml"
    params:
        study=prefetch_study,
    shell:
        "python -m annodistill.hub prefetch-models --config-json {params.study:q} "
        "--manifest {output} 2> {log}"


# named targets per task: `snakemake --profile slurm task_<name>` builds one task only: every
# final target of every stage under results/<name>/ (evaluated after all stages are included)
for _task in TASKS:

    rule:
        name:
            f"task_{_task}"
        input:
            lambda wildcards, t=_task: [
                p for p in all_targets(include_excluded=True) if p.startswith(f"results/{t}/")
            ],
        localrule: True


# small rules of other stages that need no compute node (the evaluation stage declares its own)
localrules:
    prefetch_models,
    teacher_gate,
