"""After the runs: read run and sweep directories (the sweep table, figures, index.html, the W&B report).

Everything here only reads what runs wrote; nothing in the pipeline's training path imports it."""
