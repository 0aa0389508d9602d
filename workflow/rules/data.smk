# Data stage: fetch the default study's human-coded data, ingest each task, split it.


rule fetch_vader:
    output:
        "resources/vader/SOURCE.json",
        expand(
            "resources/vader/hutto_ICWSM_2014/{corpus}_{kind}.txt",
            corpus=VADER_CORPORA,
            kind=["GroundTruth", "anonDataRatings"],
        ),
    log:
        "logs/fetch_vader.log",
    conda:
        "../../envs/data.yaml"
    params:
        dest=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m annodistill.cli data fetch-vader --dest {params.dest} 2> {log}"


rule ingest:
    input:
        unpack(ingest_inputs),
    output:
        clean="results/{task}/data/clean.parquet",
        summary="results/{task}/data/summary.json",
    log:
        "logs/{task}/ingest.log",
    conda:
        "../../envs/data.yaml"
    params:
        codebook=task_yaml,
        # what the results depend on: the source and the label set, not the prompt
        codebook_data=codebook_data,
    shell:
        "python -m annodistill.cli data ingest --codebook {params.codebook} --raw {input.raw} "
        "--out {output.clean} --summary {output.summary} 2> {log}"


rule coders:
    # per-coder ratings (codebooks with source.coders): human-human agreement in the evaluation
    input:
        unpack(coders_inputs),
    output:
        coders="results/{task}/data/coders.parquet",
        summary="results/{task}/data/coders_summary.json",
    log:
        "logs/{task}/coders.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m annodistill.cli data coders --codebook {input.codebook} --clean {input.clean} "
        "--raw {input.raw} --out {output.coders} --summary {output.summary} 2> {log}"


rule split:
    input:
        clean="results/{task}/data/clean.parquet",
    output:
        test="results/{task}/splits/test.parquet",
        validation="results/{task}/splits/validation.parquet",
        train_pool="results/{task}/splits/train_pool.parquet",
        membership="results/{task}/splits/membership.parquet",
        manifest="results/{task}/splits/manifest.json",
    log:
        "logs/{task}/split.log",
    conda:
        "../../envs/data.yaml"
    params:
        codebook=task_yaml,
        codebook_data=codebook_data,
        seed=SPLIT["seed"],
        test=SPLIT["test_size"],
        validation=SPLIT["validation_size"],
        sizes=",".join(str(n) for n in SPLIT["train_sizes"]),
        llm=SPLIT["llm_train_size"],
        stratify="--stratify" if SPLIT.get("stratify") else "",
        out_dir=lambda wildcards, output: os.path.dirname(output.manifest),
    shell:
        "python -m annodistill.cli data split --clean {input.clean} --codebook {params.codebook} "
        "--out-dir {params.out_dir} "
        "--seed {params.seed} --test-size {params.test} --validation-size {params.validation} "
        "--train-sizes {params.sizes} --llm-train-size {params.llm} {params.stratify} 2> {log}"


rule data:
    # named target: fetch, ingest and split every task
    input:
        data_targets(),
