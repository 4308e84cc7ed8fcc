"""The run record: what a run directory and a sweep directory hold, how each file is named, written and read.

The ground floor of the project: the LightningModules, callbacks, the CLI, the sweep driver and the reports all
import it, and it imports none of them.
"""
