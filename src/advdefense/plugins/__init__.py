"""Plug-in defences: put a Python file here (or in a directory named by $ADVDEFENSE_PLUGINS) with one class per
defence, decorated with the `register` of its kind (`advdefense.purifiers`, `advdefense.detectors`,
`advdefense.robust_training`), and every Snakemake run, table, figure and estimate has it; `methods: null` runs
it. Its declaration (`name`, `title` and the other fields of its kind's spec) is read from the file without
running it, so those class attributes are literals (`advdefense.plan.plugins`). README "Adding a defence".
Files whose name starts with `_` are not plug-ins.
"""
