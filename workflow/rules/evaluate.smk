# Evaluation stage: per-task metrics, the tables across tasks, the figures, the HTML report.
# Config: the `evaluation:` section (workflow/schemas/evaluation.schema.yaml, docs/evaluation.md).
# `snakemake figures` brings every table and figure up to date; `snakemake figures --forcerun
# summary` rebuilds them all from the per-task metrics on disk (seconds, nothing retrained).
# Expected inputs come from the other stages' functions: student_prediction_files(task)
# (students.smk) and teacher_names() (teacher.smk); fallbacks in annodistill.evaluate.wiring.

from annodistill.evaluate.wiring import EvaluationWiring  # noqa: E402

EVALUATION = config.setdefault("evaluation", {})
validate(EVALUATION, schema=str(SCHEMAS / "evaluation.schema.yaml"))  # fills defaults
EVAL_WIRING = EvaluationWiring(
    config,
    TASKS,
    TASK_DIR,
    workflow.basedir,
    teacher_names=globals().get("teacher_names"),
    student_prediction_files=globals().get("student_prediction_files"),
    student_targets=getattr(globals().get("STUDENT_WIRING"), "targets", None),
    gate_allows=globals().get("gate_allows"),
)


report: "../report/workflow.rst"


localrules:
    metrics,
    summary,
    plot,
    figures,


rule metrics:
    # one task: every student run and every teacher's few-shot labels, bootstrap CIs
    input:
        # one function per item: those that wait for a teacher gate (a checkpoint) do so alone
        test=EVAL_WIRING.test,
        train_pool=EVAL_WIRING.train_pool,
        teacher_test=EVAL_WIRING.teacher_test,
        predictions=EVAL_WIRING.task_predictions,
        teacher_train=EVAL_WIRING.teacher_train,
    output:
        metrics="results/{task}/metrics.csv",
        gaps="results/{task}/metrics_gaps.csv",
        consistency="results/{task}/metrics_consistency.csv",
        sweep="results/{task}/metrics_sweep.csv",
    log:
        "logs/{task}/metrics.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        codebook=EVAL_WIRING.codebook,
        codebook_labels=EVAL_WIRING.codebook_labels,
        llm=SPLIT["llm_train_size"],
        equal=EVAL_WIRING.equal_size,
        bins=",".join(str(b) for b in EVALUATION["consistency_bins"]),
        thresholds=",".join(str(t) for t in EVALUATION["consistency_thresholds"]),
        n=EVALUATION["bootstrap"]["n_resamples"],
        confidence=EVALUATION["bootstrap"]["confidence"],
        seed=EVALUATION["bootstrap"]["seed"],
    shell:
        "python -m annodistill.cli evaluate task --task {wildcards.task} "
        "--codebook {params.codebook} --test {input.test} --train-pool {input.train_pool} "
        "--predictions {input.predictions} --teacher-test {input.teacher_test} "
        "--teacher-train {input.teacher_train} --llm-train-size {params.llm} "
        "--equal-size {params.equal} --bins {params.bins} --thresholds {params.thresholds} "
        "--n-resamples {params.n} --confidence {params.confidence} --seed {params.seed} "
        "--metrics {output.metrics} --gaps {output.gaps} "
        "--consistency {output.consistency} --sweep {output.sweep} 2> {log}"


rule summary:
    # tables across tasks: CSV (full precision), Markdown, LaTeX; HTML for the report
    input:
        unpack(EVAL_WIRING.summary_inputs),
        costs=EVAL_WIRING.costs,
    output:
        multiext("results/summary/headline", ".csv", ".md", ".tex"),
        multiext("results/summary/paper_comparison", ".csv", ".md", ".tex"),
        multiext("results/summary/gaps_median", ".csv", ".md", ".tex"),
        multiext("results/summary/gaps_by_task", ".csv", ".md", ".tex"),
        multiext("results/summary/metrics_by_task", ".csv", ".md", ".tex"),
        multiext("results/summary/teacher_gate", ".csv", ".md", ".tex"),
        multiext("results/summary/consistency", ".csv", ".md", ".tex"),
        multiext("results/summary/consistency_sweep", ".csv", ".md", ".tex"),
        multiext("results/summary/cost", ".csv", ".md", ".tex"),
        "results/summary/metrics_all.csv",
        "results/summary/consistency_by_task.csv",
        "results/summary/sweep_by_task.csv",
        "results/summary/meta.json",
        headline=report(
            "results/summary/headline.html",
            caption="../report/headline.rst",
            category="1 Findings",
            subcategory="Tables",
            labels={"table": "headline: medians across tasks"},
        ),
        paper=report(
            "results/summary/paper_comparison.html",
            caption="../report/paper_comparison.rst",
            category="1 Findings",
            subcategory="Tables",
            labels={"table": "side by side with the paper"},
        ),
        gaps=report(
            "results/summary/gaps_median.html",
            caption="../report/gaps_median.rst",
            category="1 Findings",
            subcategory="Tables",
            labels={"table": "median gaps, CIs, Wilcoxon tests"},
        ),
        gaps_by_task=report(
            "results/summary/gaps_by_task.html",
            caption="../report/gaps_by_task.rst",
            category="3 Per task",
            labels={"table": "gaps per task"},
        ),
        metrics_by_task=report(
            "results/summary/metrics_by_task.html",
            caption="../report/metrics_by_task.rst",
            category="3 Per task",
            labels={"table": "metrics per task"},
        ),
        gate=report(
            "results/summary/teacher_gate.html",
            caption="../report/teacher_gate.rst",
            category="2 Teacher",
            subcategory="Tables",
            labels={"table": "validation gate"},
        ),
        consistency=report(
            "results/summary/consistency.html",
            caption="../report/consistency.rst",
            category="2 Teacher",
            subcategory="Tables",
            labels={"table": "consistency vs accuracy"},
        ),
        sweep=report(
            "results/summary/consistency_sweep.html",
            caption="../report/consistency_sweep.rst",
            category="2 Teacher",
            subcategory="Tables",
            labels={"table": "consistency threshold sweep"},
        ),
        cost=report(
            "results/summary/cost.html",
            caption="../report/cost.rst",
            category="2 Teacher",
            subcategory="Tables",
            labels={"table": "cost per task"},
        ),
    log:
        "logs/summary.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        headline=EVAL_WIRING.headline_args,
        n=EVALUATION["task_bootstrap"]["n_resamples"],
        confidence=EVALUATION["bootstrap"]["confidence"],
        seed=EVALUATION["task_bootstrap"]["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.headline),
    shell:
        "python -m annodistill.cli evaluate summary --metrics {input.metrics} "
        "--gaps {input.gaps} --consistency {input.consistency} --sweep {input.sweep} "
        "--gates {input.gates} --costs {input.costs} --reference {input.reference} "
        "{params.headline} --n-resamples {params.n} --confidence {params.confidence} "
        "--seed {params.seed} --out-dir {params.out_dir} 2> {log}"


rule plot:
    # the figures, PNG (in the report) and PDF, from the summary tables only
    input:
        rules.summary.output,
    output:
        multiext("results/figures/median_f1", ".pdf"),
        multiext("results/figures/precision_recall", ".pdf"),
        multiext("results/figures/f1_gap", ".pdf"),
        multiext("results/figures/consistency_accuracy", ".pdf"),
        multiext("results/figures/learning_curve", ".pdf"),
        multiext("results/figures/consistency_sweep", ".pdf"),
        median_f1=report(
            "results/figures/median_f1.png",
            caption="../report/fig_median_f1.rst",
            category="1 Findings",
            subcategory="Figures",
            labels={"figure": "median F1 by condition"},
        ),
        precision_recall=report(
            "results/figures/precision_recall.png",
            caption="../report/fig_precision_recall.rst",
            category="1 Findings",
            subcategory="Figures",
            labels={"figure": "precision vs recall"},
        ),
        f1_gap=report(
            "results/figures/f1_gap.png",
            caption="../report/fig_f1_gap.rst",
            category="1 Findings",
            subcategory="Figures",
            labels={"figure": "F1 gap per task"},
        ),
        learning_curve=report(
            "results/figures/learning_curve.png",
            caption="../report/fig_learning_curve.rst",
            category="1 Findings",
            subcategory="Figures",
            labels={"figure": "learning curve"},
        ),
        consistency_accuracy=report(
            "results/figures/consistency_accuracy.png",
            caption="../report/fig_consistency_accuracy.rst",
            category="2 Teacher",
            subcategory="Figures",
            labels={"figure": "consistency vs accuracy"},
        ),
        consistency_sweep=report(
            "results/figures/consistency_sweep.png",
            caption="../report/fig_consistency_sweep.rst",
            category="2 Teacher",
            subcategory="Figures",
            labels={"figure": "consistency threshold sweep"},
        ),
    log:
        "logs/figures.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        summary_dir=lambda wildcards, input: os.path.dirname(input[0]),
        out_dir=lambda wildcards, output: os.path.dirname(output.median_f1),
    shell:
        "python -m annodistill.cli evaluate figures --summary-dir {params.summary_dir} "
        "--out-dir {params.out_dir} 2> {log}"


rule figures:
    # named target: every summary table and figure (add --forcerun summary to rebuild them all
    # from the per-task metrics on disk)
    input:
        rules.summary.output,
        rules.plot.output,


# `rule all`: every task's metrics and, through `figures`, every table and figure (nothing while
# the study has neither teachers nor students)
STAGE_TARGETS.append(EVAL_WIRING.task_targets)
STAGE_TARGETS.append(
    lambda: list(rules.figures.input) if EVAL_WIRING.has_work() else []
)
