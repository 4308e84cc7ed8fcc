import os

import pytest

from tests.slurm.cluster import Cluster


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running single-node SLURM cluster (skipped, with the reason, only where it cannot start)."""
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    reason = cluster.start()
    if reason:
        cluster.stop()
        pytest.skip(f"no SLURM cluster: {reason}")
    # sbatch here, and srun inside the jobs (which inherit the environment), find the test cluster's slurm.conf
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
