#!/bin/bash
# Run examples/monte_carlo.py on a Slurm cluster: the same script that runs
# serially on a laptop runs here on every task of the job, under MPI.
#
#   sbatch examples/slurm_job.sh            (from the repository's top folder)
#
# Nothing in the Python script changes: `Parallelizer.lookup(None)` sees that
# a launcher started several ranks (SLURM_NTASKS with PMI_RANK/PMIX_RANK,
# or PMI_SIZE, OMPI_COMM_WORLD_SIZE, ...) and picks the MPI backend.
#
# Adjust the resources, the account/partition lines and the module names to
# your cluster (`sinfo`, `module avail`).
#
# Tested (tests/cluster/test_slurm.py, part of `make test`) on a private Slurm
# 22.05 cluster (Debian's slurm-wlm, munge, MpiDefault=pmi2) with the mpich
# wheel: as written on 2 nodes (two virtual hosts) x 4 tasks, and on 1 node.
# The library itself is also tested under the Open MPI and Intel MPI wheels,
# each with its own mpiexec (tests/mpi_matrix.py), not under srun.
#SBATCH --job-name=parallelizer-demo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=1
#SBATCH --time=00:10:00
#SBATCH --output=parallelizer-demo-%j.out
##SBATCH --account=my_account
##SBATCH --partition=compute

set -eo pipefail   # stop at the first failing command

# 1. The Python environment. Two ways to get MPI into it:
#
#  a) The MPI wheel (what `make install` does: pip install 'parallelizer[mpi]'
#     brings mpi4py and the `mpich` wheel with its own mpiexec). Easiest, and
#     fine on one node; across nodes it may not use the cluster's fast
#     network (InfiniBand, Slingshot, ...).
#
#  b) The cluster's MPI (recommended for real jobs): build mpi4py against it,
#     once, in the job's environment, and do not install the `mpich` wheel:
#
#       module load openmpi          # or mpich, intel-mpi, cray-mpich, ...
#       python -m venv ~/venvs/par && source ~/venvs/par/bin/activate
#       pip install -e /path/to/parallelizer          # without [mpi]
#       pip uninstall -y mpich mpi4py                 # if they were installed
#       MPICC=$(which mpicc) pip install --no-binary=mpi4py --no-cache-dir mpi4py
#       python -m parallelizer info                   # MPI library and mpiexec: the module's
#
#     Load the same modules in every job script, as below.
# module load openmpi
source "${PARALLELIZER_VENV:-$HOME/venvs/par}/bin/activate"

# One thread per process for numpy's BLAS, or 8 processes start 8 threads each.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"

# 2. Launch. srun starts one Python process per task (8 here). The MPI library
#    talks to srun through PMI2 or PMIx: if the cluster's documentation says
#    so, add `--mpi=pmix` or `--mpi=pmi2` (`srun --mpi=list` shows the choices).
#    With option (a), the mpich wheel, use `--mpi=pmi2`: the wheel has no PMIx
#    (under `--mpi=pmix` parallelizer raises LaunchMismatchError saying so).
srun python examples/monte_carlo.py

# Or with the MPI library's own launcher (it reads the allocation from Slurm).
# With option (a) that is the wheel's mpiexec: `python -m parallelizer -n N`
# finds it for you.
#
#   mpiexec -n "$SLURM_NTASKS" python examples/monte_carlo.py
#   python -m parallelizer -n "$SLURM_NTASKS" examples/monte_carlo.py
#
# `python -m parallelizer script.py` (also under srun/mpiexec) aborts the
# whole job with the failing rank's traceback if any rank raises, instead of
# leaving the other ranks waiting until the time limit:
#
#   srun python -m parallelizer examples/monte_carlo.py
