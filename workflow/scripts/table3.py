"""Rule `table3`: the paper's Table 3 (purification), plus all-image, adaptive and clean-cost rows."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import PAPER_TABLE3, table3
from advdefense.tables import write_table
from advdefense.workflow_support import run_script


def main(smk):
    columns = [(name, float(eps)) for name, eps in smk.params.columns]
    n = len(columns)
    purified = dict(zip(columns, smk.input.purified))
    adaptive = dict(zip(columns, smk.input.adaptive)) if len(smk.input.adaptive) == n else {}
    table = table3(columns, purified, adaptive, smk.input.clean)
    notes = [
        "Accuracy (%) of the classifier on the test images attacked at each epsilon; 'overall' pools all columns.",
        "Successful adversarials: images the attack made the undefended classifier misclassify (the paper's rows).",
        "Adaptive attack: the same attack and epsilon run end to end through autoencoder + classifier (white box).",
        "Paper (successful adversarials, after purification): "
        + ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE3.items()) + "; before: 0 by definition.",
    ]
    write_table(table, smk.output.csv, smk.output.md, "Table 3: purification by the autoencoder", notes)


run_script(snakemake, main)  # noqa: F821
