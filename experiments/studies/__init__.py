"""Studies: many generators trained and scored alike, as cells of one grid (experiments/jobs).

    comparison.py  one comparison (the compare and literature commands): its settings, the
                   judge cell and one cell per entry, the rows, the report
    frontier.py    the quality-diversity frontier (the frontier command): every model's curves
                   over seeds, the post-hoc guides, dominance against a reference curve
"""
