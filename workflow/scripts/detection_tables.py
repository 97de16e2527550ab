"""Rule `detection_tables`: Table 4 (latent detector), Table 5 (all methods) and the generalisation matrix."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

import pandas as pd

from advdefense.detection import PAPER_TABLE4, generalisation_matrix, table4, table5
from advdefense.tables import write_table
from advdefense.workflow_support import run_script


def main(smk):
    keys = [key for _, _, key in smk.params.attack_keys]
    evaluations = pd.concat([pd.read_csv(p) for p in smk.input.evaluations], ignore_index=True)
    latent = evaluations[evaluations["method"] == "latent_mlp"]
    mmd = pd.read_csv(smk.input.mmd[0]) if smk.input.mmd else None
    paper = ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE4.items())
    write_table(table4(latent, keys), smk.output.table4_csv, smk.output.table4_md,
                "Table 4: detection from the Glow latent (5-layer MLP)",
                ["Balanced test sets: the clean test images and their attacked versions; accuracy is the paper's metric.",
                 "One detector per attack trained on that attack's training images; 'overall': one detector trained on "
                 "all attacks pooled, tested on all of them.",
                 "detected, successful/failed adv.: share of attacked images flagged, split by whether the attack "
                 "fooled the classifier.",
                 f"Paper (accuracy %): {paper}."])
    write_table(table5(evaluations, mmd, keys, smk.params.mmd_batch if mmd is not None else None),
                smk.output.table5_csv, smk.output.table5_md,
                "Table 5: detection methods compared on the same images",
                ["Every method is trained on the same training images and tested on the same test images here; the "
                 "paper copied its baseline numbers from other papers and data sets.",
                 "acc: balanced accuracy (%) of the detector trained on that attack; AUROC is threshold-free.",
                 "MMD: a test on batches, not single images; its 'accuracy' is the mean of power on attacked "
                 "batches and 1 - false-positive rate on clean batches at the configured level; see "
                 "results/detection/<dataset>/mmd/power.csv for every batch size."])
    write_table(generalisation_matrix(latent), smk.output.general_csv, smk.output.general_md,
                "Latent detector generalisation: AUROC, trained on rows, tested on columns", digits=3)


run_script(snakemake, main)  # noqa: F821
