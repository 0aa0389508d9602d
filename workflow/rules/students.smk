# Student stage: one job per (task, model, condition), all seeds and the whole grid inside.
# Config: the `students:` section (workflow/schemas/students.schema.yaml, docs/students.md).
# Input functions and resources come from annodistill.students.wiring (teacher_names() there
# reads the `teachers:` section).
from annodistill.students.wiring import StudentWiring  # noqa: E402

STUDENT_WIRING = StudentWiring(config, TASKS, TASK_DIR)
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
        spec=STUDENT_WIRING.spec_json,
        teacher=STUDENT_WIRING.teacher_arg,
        splits=lambda wildcards, input: os.path.dirname(input.train_pool),
    shell:
        "python -m annodistill.cli students train --task {wildcards.task} "
        "--model-name {wildcards.model} --condition {wildcards.condition} --spec {params.spec:q} "
        "--codebook {input.codebook} --splits-dir {params.splits} {params.teacher} "
        "--predictions {output.predictions} --run-json {output.run} --threads {threads} 2> {log}"


rule students:
    # named target: every configured (task, model, condition) student
    input:
        STUDENT_WIRING.targets(),
