"""The evaluation suite behind ``mfrm bench``: scenarios (:mod:`.scenarios`), the policies and knob
values it sweeps (:mod:`.suite`), one cell (:mod:`.cells`), running many (:mod:`.execute`), and the
verdicts: frontiers, seed-paired dominance, plots (:mod:`.analysis`)."""
