# Student stage: one job per (task, model, condition), all seeds and the whole grid inside.
# Config: the `students:` section (workflow/schemas/students.schema.yaml, docs/students.md).
# Input functions and resources come from annodistill.students.wiring (teacher_names() there
# reads the `teachers:` section).
from annodistill.students.wiring import StudentWiring  # noqa: E402

STUDENT_WIRING = StudentWiring(config, TASKS, TASK_DIR)
# `rule all` lists the human-label runs; a run on a teacher's labels is reached through the
# task's metrics once that teacher's gate (a checkpoint, teacher.smk) has let its labels be bought
STAGE_TARGETS.append(STUDENT_WIRING.targets)


rule train_student:
    input:
        unpack(STUDENT_WIRING.inputs),
    output:
        predictions="results/{task}/students/{model}/{condition}/predictions.parquet",
        run="results/{task}/students/{model}/{condition}/run.json",
    log:
        "logs/{task}/students/{model}/{condition}.log",
    wildcard_constraints:
        model=STUDENT_WIRING.model_constraint(),
        condition=STUDENT_WIRING.condition_constraint(),
    conda:
        "../../envs/students.yaml"
    threads: STUDENT_WIRING.threads
    resources:
        mem_mb=STUDENT_WIRING.mem_mb,
        runtime=STUDENT_WIRING.runtime,
        gpu=STUDENT_WIRING.gpu,
    params:
        # the result-defining part of the spec (device, eval_batch_size, save_models and the
        # resources reach the job through the shell prefix, common.smk) and of the codebook
        spec=STUDENT_WIRING.spec_json,
        codebook=STUDENT_WIRING.codebook,
        codebook_labels=STUDENT_WIRING.codebook_labels,
        teacher=STUDENT_WIRING.teacher_arg,
        splits=lambda wildcards, input: os.path.dirname(input.train_pool),
    shell:
        "python -m annodistill.cli students train --task {wildcards.task} "
        "--model-name {wildcards.model} --condition {wildcards.condition} --spec {params.spec:q} "
        "--codebook {params.codebook} --splits-dir {params.splits} {params.teacher} "
        "--predictions {output.predictions} --run-json {output.run} --threads {threads} 2> {log}"


rule students:
    # named target: every configured (task, model, condition) student whose labels can exist
    input:
        all_student_targets,
