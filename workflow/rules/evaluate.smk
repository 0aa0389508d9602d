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
    prevalence,
    budget,
    cost_f1,
    disagreements,


rule metrics:
    # one task: every student run and every teacher's few-shot labels, bootstrap CIs
    input:
        # one function per item: those that wait for a teacher gate (a checkpoint) do so alone
        test=EVAL_WIRING.test,
        train_pool=EVAL_WIRING.train_pool,
        teacher_test=EVAL_WIRING.teacher_test,
        predictions=EVAL_WIRING.task_predictions,
        teacher_train=EVAL_WIRING.teacher_train,
        coders=EVAL_WIRING.task_coders,
    output:
        metrics="results/{task}/metrics.csv",
        gaps="results/{task}/metrics_gaps.csv",
        consistency="results/{task}/metrics_consistency.csv",
        sweep="results/{task}/metrics_sweep.csv",
        per_class="results/{task}/metrics_per_class.csv",
        confusion="results/{task}/metrics_confusion.csv",
        gaps_per_class="results/{task}/metrics_gaps_per_class.csv",
        agreement="results/{task}/metrics_agreement.csv",
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
        "--teacher-train {input.teacher_train} --coders {input.coders} --llm-train-size {params.llm} "
        "--equal-size {params.equal} --bins {params.bins} --thresholds {params.thresholds} "
        "--n-resamples {params.n} --confidence {params.confidence} --seed {params.seed} "
        "--metrics {output.metrics} --gaps {output.gaps} "
        "--consistency {output.consistency} --sweep {output.sweep} --per-class {output.per_class} "
        "--confusion {output.confusion} --gaps-per-class {output.gaps_per_class} "
        "--agreement {output.agreement} 2> {log}"


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
        multiext("results/summary/agreement_median", ".csv", ".md", ".tex"),
        multiext("results/summary/per_class", ".csv", ".md", ".tex"),
        multiext("results/summary/agreement", ".csv", ".md", ".tex"),
        "results/summary/metrics_all.csv",
        "results/summary/consistency_by_task.csv",
        "results/summary/sweep_by_task.csv",
        "results/summary/gaps_per_class_by_task.csv",
        "results/summary/gaps_per_class_median.csv",
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
        agreement_median=report(
            "results/summary/agreement_median.html",
            caption="../report/agreement_median.rst",
            category="1 Findings",
            subcategory="Tables",
            labels={"table": "agreement: teacher-human and human-human"},
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
        per_class=report(
            "results/summary/per_class.html",
            caption="../report/per_class.rst",
            category="3 Per task",
            labels={"table": "per-class metrics per task"},
        ),
        agreement=report(
            "results/summary/agreement.html",
            caption="../report/agreement.rst",
            category="3 Per task",
            labels={"table": "agreement per task"},
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
        "--per-class {input.per_class} --gaps-per-class {input.gaps_per_class} "
        "--agreement {input.agreement} --gates {input.gates} --costs {input.costs} --reference {input.reference} "
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
        multiext("results/figures/per_class_precision_recall", ".pdf"),
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
        per_class_precision_recall=report(
            "results/figures/per_class_precision_recall.png",
            caption="../report/fig_per_class_precision_recall.rst",
            category="1 Findings",
            subcategory="Figures",
            labels={"figure": "precision vs recall per class"},
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


# --- beyond the paper (docs/evaluation.md#beyond-the-paper): valid prevalence estimates with
# PPI++, the human-label budget, cost per F1 point, the teacher-human disagreement page

PREVALENCE = EVALUATION["prevalence"]


rule prevalence:
    # prevalence per task and class: human labels alone, LLM labels at face value, PPI++;
    # coverage of each interval over resamples of a world with a known truth
    input:
        codebooks=EVAL_WIRING.paired_codebooks,
        splits=EVAL_WIRING.paired_splits,
        teacher_labels=EVAL_WIRING.paired_teacher_labels,
    output:
        multiext("results/summary/prevalence", ".csv", ".md", ".tex"),
        multiext("results/summary/prevalence_coverage", ".csv", ".md", ".tex"),
        "results/figures/prevalence.pdf",
        table=report(
            "results/summary/prevalence.html",
            caption="../report/prevalence.rst",
            category="4 Beyond the paper",
            subcategory="Prevalence",
            labels={"table": "prevalence: human, LLM at face value, PPI++"},
        ),
        coverage=report(
            "results/summary/prevalence_coverage.html",
            caption="../report/prevalence_coverage.rst",
            category="4 Beyond the paper",
            subcategory="Prevalence",
            labels={"table": "coverage where the truth is known"},
        ),
        figure=report(
            "results/figures/prevalence.png",
            caption="../report/fig_prevalence.rst",
            category="4 Beyond the paper",
            subcategory="Prevalence",
            labels={"figure": "prevalence estimates and CIs"},
        ),
    log:
        "logs/prevalence.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        confidence=EVALUATION["bootstrap"]["confidence"],
        n=PREVALENCE["n_resamples"],
        seed=PREVALENCE["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output.table),
        figures_dir=lambda wildcards, output: os.path.dirname(output.figure),
    shell:
        "python -m annodistill.cli evaluate prevalence --codebooks {input.codebooks} "
        "--splits {input.splits} --teacher-labels {input.teacher_labels} "
        "--confidence {params.confidence} --n-resamples {params.n} --seed {params.seed} "
        "--out-dir {params.out_dir} --figures-dir {params.figures_dir} 2> {log}"


rule budget:
    # CI width of the prevalence against the number of human labels, with and without LLM labels
    input:
        codebooks=EVAL_WIRING.paired_codebooks,
        splits=EVAL_WIRING.paired_splits,
        teacher_labels=EVAL_WIRING.paired_teacher_labels,
        metrics_all="results/summary/metrics_all.csv",
        meta="results/summary/meta.json",
    output:
        multiext("results/summary/budget", ".csv", ".md", ".tex"),
        "results/summary/budget_by_task.csv",
        "results/figures/budget.pdf",
        table=report(
            "results/summary/budget.html",
            caption="../report/budget.rst",
            category="4 Beyond the paper",
            subcategory="Human-label budget",
            labels={"table": "CI width by number of human labels"},
        ),
        figure=report(
            "results/figures/budget.png",
            caption="../report/fig_budget.rst",
            category="4 Beyond the paper",
            subcategory="Human-label budget",
            labels={"figure": "the human-label budget curve"},
        ),
    log:
        "logs/budget.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        confidence=EVALUATION["bootstrap"]["confidence"],
        n=PREVALENCE["budget_resamples"],
        seed=PREVALENCE["seed"],
        sizes=",".join(str(n) for n in PREVALENCE["budget_sizes"]),
        out_dir=lambda wildcards, output: os.path.dirname(output.table),
        figures_dir=lambda wildcards, output: os.path.dirname(output.figure),
    shell:
        "python -m annodistill.cli evaluate budget --codebooks {input.codebooks} "
        "--splits {input.splits} --teacher-labels {input.teacher_labels} "
        "--metrics-all {input.metrics_all} --meta {input.meta} --sizes {params.sizes} "
        "--confidence {params.confidence} --n-resamples {params.n} --seed {params.seed} "
        "--out-dir {params.out_dir} --figures-dir {params.figures_dir} 2> {log}"


rule cost_f1:
    # cost per F1 point per condition (config rates + recorded spend) and where LLM labels pay off
    input:
        metrics=EVAL_WIRING.summary_metrics,
        runs=EVAL_WIRING.student_runs,
        teacher_costs=EVAL_WIRING.costs,
        meta="results/summary/meta.json",
    output:
        multiext("results/summary/cost_f1", ".csv", ".md", ".tex"),
        multiext("results/summary/cost_payoff", ".csv", ".md", ".tex"),
        "results/summary/cost_f1_by_task.csv",
        "results/summary/cost_teacher_by_split.csv",
        "results/figures/cost_f1.pdf",
        table=report(
            "results/summary/cost_f1.html",
            caption="../report/cost_f1.rst",
            category="4 Beyond the paper",
            subcategory="Cost per F1 point",
            labels={"table": "cost per F1 point"},
        ),
        payoff=report(
            "results/summary/cost_payoff.html",
            caption="../report/cost_payoff.rst",
            category="4 Beyond the paper",
            subcategory="Cost per F1 point",
            labels={"table": "where LLM labels pay off"},
        ),
        figure=report(
            "results/figures/cost_f1.png",
            caption="../report/fig_cost_f1.rst",
            category="4 Beyond the paper",
            subcategory="Cost per F1 point",
            labels={"figure": "F1 against total cost"},
        ),
    log:
        "logs/cost_f1.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        rates=EVAL_WIRING.costs_args,
        out_dir=lambda wildcards, output: os.path.dirname(output.table),
        figures_dir=lambda wildcards, output: os.path.dirname(output.figure),
    shell:
        "python -m annodistill.cli evaluate cost --metrics {input.metrics} --runs {input.runs} "
        "--teacher-costs {input.teacher_costs} --meta {input.meta} {params.rates} "
        "--out-dir {params.out_dir} --figures-dir {params.figures_dir} 2> {log}"


rule disagreements:
    # searchable page of the validation and test items where teacher and human labels differ
    input:
        unpack(EVAL_WIRING.disagreement_inputs),
    output:
        csv="results/summary/disagreements.csv",
        page=report(
            "results/summary/disagreements.html",
            caption="../report/disagreements.rst",
            category="4 Beyond the paper",
            subcategory="Codebook revision",
            labels={"page": "teacher-human disagreements"},
        ),
    log:
        "logs/disagreements.log",
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "python -m annodistill.cli evaluate disagreements --codebooks {input.codebooks} "
        "--splits {input.splits} --teacher-labels {input.teacher_labels} "
        "--out {output.page} --csv {output.csv} 2> {log}"


rule figures:
    # named target: every summary table and figure (add --forcerun summary to rebuild them all
    # from the per-task metrics on disk)
    input:
        rules.summary.output,
        rules.plot.output,
        EVAL_WIRING.downstream_targets(),


# `rule all`: every task's metrics and, through `figures`, every table and figure (nothing while
# the study has neither teachers nor students)
STAGE_TARGETS.append(EVAL_WIRING.task_targets)
STAGE_TARGETS.append(
    lambda: list(rules.figures.input) if EVAL_WIRING.has_work() else []
)
