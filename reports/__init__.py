"""After the runs: the sweep table, the local report pages (index.html with figures), the W&B report spec.

Reads only what runs wrote (run_record/); nothing upstream imports it. One module per experiment kind under
reports/kinds/, behind one registry.
"""
